"""Problem plugins: one file per problem family; each registers itself on import."""
