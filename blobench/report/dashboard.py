"""The interactive dashboard: one self-contained, offline ``dashboard.html`` per report, beside ``index.html``.

It draws the run's curves (``convergence``: a quantity against outer iterations, cumulative oracle calls or
seconds; ``error_vs_budget``: the error against the budget) as SVG with a small inline script: no library, no
network, no server. Controls: the experiment, the quantity, the x axis, log/linear axes, seed bands (mean +-
1.96 s.e.m. over seeds, or every seed's own curve), one toggle per method, and a filter on any parameter
(problem or estimator parameter, seed, problem). The static report (index.html, PNG + SVG) stays the one for
papers.

State for tests and links: the page reads its URL fragment at load (``#experiment=...&quantity=...&x=calls&
log=0&toggle=itd,fo&filter=kappa=10``); ``toggle`` clicks the method checkboxes, so the same handler as a user's
click runs. After each redraw it sets, on ``<body>``: ``data-curves`` (lines drawn), ``data-methods`` (methods
shown), ``data-bands``, ``data-xaxis``, ``data-ylog``.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.report.base import estimator_params, labelled, ok, params

NAME = "dashboard.html"
X_COLUMNS = {"iteration": "outer iteration", "calls": "oracle calls (cumulative)", "seconds": "seconds"}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def curves_data(df: pd.DataFrame, colors: dict) -> dict[str, Any]:
    """The JSON the page draws: one entry per (cell, quantity) curve, with its parameters for the filter."""
    out: list[dict[str, Any]] = []
    conv = ok(df, "convergence")
    if not conv.empty and "iteration" in conv:
        c = labelled(conv[conv["iteration"].notna()])
        calls = [k for k in c.columns if k.startswith("calls_")]
        c = c.assign(_calls=c[calls].fillna(0).sum(axis=1) if calls else float("nan"),
                     _secs=c["seconds_elapsed"] if "seconds_elapsed" in c else float("nan"),
                     value=pd.to_numeric(c["value"], errors="coerce"))
        for (key, q), g in c.groupby(["key", "quantity"], sort=False):
            g = g.sort_values("iteration")
            pts = [[_num(i), _num(k), _num(s), _num(v)] for i, k, s, v in
                   zip(g["iteration"], g["_calls"], g["_secs"], g["value"])]
            pts = [p for p in pts if p[3] is not None]
            if len(pts) < 2:
                continue
            out.append(_curve(g.iloc[0], str(q), "convergence", pts))
    evb = ok(df, "error_vs_budget")
    if not evb.empty and "budget" in evb:
        e = labelled(evb[(evb["quantity"] == "error") & evb["budget"].notna()])
        e = e.assign(value=pd.to_numeric(e["value"], errors="coerce"))
        for key, g in e.groupby("key", sort=False):
            g = g.sort_values("budget")
            pts = [[_num(b), None, None, _num(v)] for b, v in zip(g["budget"], g["value"])]
            pts = [p for p in pts if p[3] is not None]
            if len(pts) >= 2:
                out.append(_curve(g.iloc[0], f"error vs {g['budget_param'].iloc[0]}", "error_vs_budget", pts))
    hexes = {str(k): "#%02x%02x%02x" % tuple(int(round(255 * x)) for x in v[:3]) for k, v in colors.items()}
    from blobench.report.style import method_styles

    dash = {"-": "", "--": "7,4", ":": "2,3", "-.": "7,3,2,3"}
    dashes = {k: dash.get(v[1], "") for k, v in method_styles(colors).items()}
    return {"curves": out, "colors": hexes, "dashes": dashes}


def _curve(r: pd.Series, quantity: str, metric: str, pts: list) -> dict[str, Any]:
    p = {f"problem.{k}": v for k, v in params(r.get("problem_params")).items()}
    try:
        ep = estimator_params(r)
    except Exception:  # an unknown plugin: the parameters as given
        ep = params(r.get("estimator_params"))
    p.update({f"estimator.{k}": v for k, v in ep.items() if v is not None})
    p.update({"problem": r["problem"], "estimator": r["estimator"], "seed": r.get("seed")})
    return {"experiment": str(r.get("experiment") or "all"), "metric": metric, "quantity": quantity,
            "method": str(r["estimator"]), "label": str(r["estimator_label"]), "problem": str(r["problem_label"]),
            "seed": r.get("seed"), "params": {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                                              for k, v in p.items()}, "points": pts}


def write_dashboard(df: pd.DataFrame, out: Path, title: str, colors: dict) -> Path | None:
    """Write ``out/dashboard.html`` (nothing where the run has no curves); returns its path or None."""
    data = curves_data(df, colors)
    if not data["curves"]:
        return None
    blob = json.dumps(data, default=str, allow_nan=False).replace("</", "<\\/")
    page = TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__DATA__", blob)
    path = out / NAME
    path.write_text(page)
    return path


TEMPLATE = """<!DOCTYPE html><html><head><meta charset='utf-8'><title>__TITLE__: dashboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#222;display:flex;min-height:100vh}
#side{width:270px;padding:.6em 1em;background:#f6f7f9;border-right:1px solid #ddd;font-size:13px;overflow:auto}
#side h1{font-size:15px;margin:.2em 0 .6em}#side label{display:block;margin:.15em 0}
#side select,#side input[type=text]{width:100%;box-sizing:border-box;margin-bottom:.4em}
#main{flex:1;padding:.6em 1em}svg{background:#fff}.sw{display:inline-block;width:22px;height:3px;vertical-align:middle;margin-right:4px}
fieldset{border:1px solid #ddd;margin:.4em 0;padding:.3em .5em}legend{font-weight:bold}
#note{font-size:12px;color:#555}
</style></head><body>
<div id='side'><h1>__TITLE__</h1>
<label>experiment<select id='exp'></select></label>
<label>quantity<select id='qty'></select></label>
<label>x axis<select id='xaxis'><option value='0'>outer iteration / budget</option><option value='1'>oracle calls</option><option value='2'>seconds</option></select></label>
<label><input type='checkbox' id='ylog' checked> log y</label>
<label><input type='checkbox' id='xlog'> log x</label>
<label><input type='checkbox' id='bands' checked> seed bands (mean &plusmn; 1.96 s.e.m.); off: every seed</label>
<fieldset><legend>methods</legend><div id='methods'></div></fieldset>
<label>filter on any parameter (key=value, e.g. problem.kappa=10)<input type='text' id='filter' placeholder='estimator.inner_steps=20'></label>
<div id='keys'></div>
<p id='note'>Offline: everything is in this file. The static report (index.html) has the paper figures.</p></div>
<div id='main'><svg id='plot' width='900' height='560'></svg></div>
<script>
var D=__DATA__;var C=D.curves;var S={hidden:{}};
function el(id){return document.getElementById(id);}
function uniq(a){var s={},o=[];a.forEach(function(v){if(!(v in s)){s[v]=1;o.push(v);}});return o;}
function fillSelect(sel,vals){sel.innerHTML='';vals.forEach(function(v){var o=document.createElement('option');o.value=v;o.textContent=v;sel.appendChild(o);});}
function pass(c){var f=el('filter').value.trim();if(!f)return true;return f.split(/[,;&]+/).every(function(t){var m=t.split('=');if(m.length<2)return true;
 var k=m[0].trim(),v=m.slice(1).join('=').trim(),p=c.params[k];if(p===undefined){for(var q in c.params){if(q.split('.').pop()===k){p=c.params[q];break;}}}
 return p!==undefined&&p!==null&&String(p)===v;});}
function current(){var e=el('exp').value,q=el('qty').value;return C.filter(function(c){return c.experiment===e&&c.quantity===q&&pass(c);});}
function refreshQty(){var e=el('exp').value;fillSelect(el('qty'),uniq(C.filter(function(c){return c.experiment===e;}).map(function(c){return c.quantity;})));}
function refreshMethods(){var e=el('exp').value,box=el('methods');box.innerHTML='';
 uniq(C.filter(function(c){return c.experiment===e;}).map(function(c){return c.method;})).sort().forEach(function(m){
 var l=document.createElement('label'),i=document.createElement('input');i.type='checkbox';i.checked=!S.hidden[m];i.dataset.method=m;
 i.addEventListener('click',function(){S.hidden[m]=!i.checked;draw();});
 var sw=document.createElement('span');sw.className='sw';var da=(D.dashes||{})[m];sw.style.background=da?'none':(D.colors[m]||'#555');
 if(da)sw.style.borderTop='3px dashed '+(D.colors[m]||'#555');
 l.appendChild(i);l.appendChild(sw);l.appendChild(document.createTextNode(m));box.appendChild(l);});
 var keys={};C.filter(function(c){return c.experiment===e;}).forEach(function(c){for(var k in c.params){(keys[k]=keys[k]||{})[String(c.params[k])]=1;}});
 el('keys').innerHTML='<details><summary>parameters of this experiment</summary>'+Object.keys(keys).sort().map(function(k){return k+': '+Object.keys(keys[k]).join(', ');}).join('<br>')+'</details>';}
function groups(cs,xi){var g={};cs.forEach(function(c){var k=c.label+' | '+c.problem;(g[k]=g[k]||{method:c.method,label:k,runs:[]}).runs.push(c);});
 return Object.keys(g).map(function(k){var G=g[k],byx={};G.runs.forEach(function(c){c.points.forEach(function(p){var x=p[xi];if(x===null)return;(byx[p[0]]=byx[p[0]]||{x:[],y:[]});byx[p[0]].x.push(x);byx[p[0]].y.push(p[3]);});});
 G.mean=Object.keys(byx).map(Number).sort(function(a,b){return a-b;}).map(function(t){var b=byx[t],n=b.y.length,m=b.y.reduce(function(a,v){return a+v;},0)/n,
 x=b.x.reduce(function(a,v){return a+v;},0)/b.x.length,sd=n>1?Math.sqrt(b.y.reduce(function(a,v){return a+(v-m)*(v-m);},0)/(n-1)):0,h=1.96*sd/Math.sqrt(n);return [x,m,m-h,m+h,n];});return G;});}
function ticks(lo,hi,log){var t=[];if(log){for(var e=Math.floor(lo);e<=Math.ceil(hi);e++)t.push(e);while(t.length>7)t=t.filter(function(v,i){return i%2===0;});return t;}
 var st=Math.pow(10,Math.floor(Math.log10((hi-lo)||1))),n=(hi-lo)/st;if(n<3)st/=2;if(n>7)st*=2;for(var v=Math.ceil(lo/st)*st;v<=hi+1e-12;v+=st)t.push(v);return t;}
function fmt(v,log){if(log)return '1e'+v;var a=Math.abs(v);return a!==0&&(a<1e-3||a>=1e5)?v.toExponential(1):String(+v.toPrecision(4));}
function draw(){var svg=el('plot'),W=+svg.getAttribute('width'),H=+svg.getAttribute('height'),L=80,R=20,T=20,B=50;
 var xi=+el('xaxis').value,ylog=el('ylog').checked,xlog=el('xlog').checked,bands=el('bands').checked;
 var cs=current().filter(function(c){return !S.hidden[c.method];}),gs=groups(cs,xi);
 var series=[];gs.forEach(function(G){if(bands)series.push({G:G,pts:G.mean.map(function(p){return [p[0],p[1],p[2],p[3]];}),band:G.mean.some(function(p){return p[4]>1;})});
  else{var seen={};G.runs.forEach(function(c){series.push({G:G,pts:c.points.filter(function(p){return p[xi]!==null;}).map(function(p){return [p[xi],p[3]];}),band:false});});}});
 function tx(v){return xlog?(v>0?Math.log10(v):null):v;}function ty(v){return ylog?(v>0?Math.log10(v):null):v;}
 var xs=[],ys=[];series.forEach(function(s){s.pts.forEach(function(p){var a=tx(p[0]),b=ty(p[1]);if(a!==null&&b!==null&&isFinite(a)&&isFinite(b)){xs.push(a);ys.push(b);}});});
 var out=[];var n=0;
 if(xs.length){var x0=Math.min.apply(null,xs),x1=Math.max.apply(null,xs),y0=Math.min.apply(null,ys),y1=Math.max.apply(null,ys);if(x1===x0)x1=x0+1;if(y1===y0){y1=y0+1;}
 function X(v){return L+(v-x0)/(x1-x0)*(W-L-R);}function Y(v){return H-B-(v-y0)/(y1-y0)*(H-T-B);}
 ticks(x0,x1,xlog).forEach(function(t){if(t<x0-1e-9||t>x1+1e-9)return;out.push("<line x1='"+X(t)+"' x2='"+X(t)+"' y1='"+T+"' y2='"+(H-B)+"' stroke='#eee'/><text x='"+X(t)+"' y='"+(H-B+16)+"' font-size='11' text-anchor='middle'>"+fmt(t,xlog)+"</text>");});
 ticks(y0,y1,ylog).forEach(function(t){if(t<y0-1e-9||t>y1+1e-9)return;out.push("<line x1='"+L+"' x2='"+(W-R)+"' y1='"+Y(t)+"' y2='"+Y(t)+"' stroke='#eee'/><text x='"+(L-6)+"' y='"+(Y(t)+4)+"' font-size='11' text-anchor='end'>"+fmt(t,ylog)+"</text>");});
 series.forEach(function(s){var col=D.colors[s.G.method]||'#555';
  if(s.band){var up=[],dn=[];s.pts.forEach(function(p){var a=tx(p[0]),u=ty(p[3]),d=ty(p[2]>0||!ylog?p[2]:p[1]);if(a===null||u===null||d===null)return;up.push(X(a)+','+Y(u));dn.unshift(X(a)+','+Y(d));});
   if(up.length>1)out.push("<polygon class='band' points='"+up.concat(dn).join(' ')+"' fill='"+col+"' fill-opacity='0.18' stroke='none'/>");}
  var pts=[];s.pts.forEach(function(p){var a=tx(p[0]),b=ty(p[1]);if(a!==null&&b!==null&&isFinite(a)&&isFinite(b))pts.push(X(a).toFixed(1)+','+Y(b).toFixed(1));});
  if(pts.length>1){n++;out.push("<polyline class='curve' data-method='"+s.G.method+"' points='"+pts.join(' ')+"' fill='none' stroke='"+col+"' stroke-dasharray='"+((D.dashes||{})[s.G.method]||'')+"' stroke-width='1.8'><title>"+s.G.label.replace(/</g,'&lt;')+"</title></polyline>");}});
 out.push("<line x1='"+L+"' x2='"+(W-R)+"' y1='"+(H-B)+"' y2='"+(H-B)+"' stroke='#333'/><line x1='"+L+"' x2='"+L+"' y1='"+T+"' y2='"+(H-B)+"' stroke='#333'/>");
 var xl=el('exp').value&&C.some(function(c){return c.metric==='error_vs_budget'&&c.quantity===el('qty').value;})&&xi===0?'budget':['outer iteration','oracle calls (cumulative)','seconds'][xi];
 out.push("<text x='"+((W+L)/2)+"' y='"+(H-10)+"' font-size='13' text-anchor='middle'>"+xl+(xlog?' (log)':'')+"</text>");
 out.push("<text transform='translate(16,"+((H-B+T)/2)+") rotate(-90)' font-size='13' text-anchor='middle'>"+el('qty').value+(ylog?' (log)':'')+"</text>");}
 else out.push("<text x='"+(W/2)+"' y='"+(H/2)+"' text-anchor='middle' fill='#888'>nothing to draw (every method hidden, or the filter matches no curve)</text>");
 svg.innerHTML=out.join('');var b=document.body;b.setAttribute('data-curves',n);b.setAttribute('data-methods',uniq(cs.map(function(c){return c.method;})).length);
 b.setAttribute('data-bands',svg.querySelectorAll('.band').length);b.setAttribute('data-xaxis',xi);b.setAttribute('data-ylog',ylog?1:0);b.setAttribute('data-ready',1);}
window.addEventListener('load',function(){var h={};location.hash.slice(1).split('&').forEach(function(kv){var i=kv.indexOf('=');if(i>0)h[decodeURIComponent(kv.slice(0,i))]=decodeURIComponent(kv.slice(i+1));});
 fillSelect(el('exp'),uniq(C.map(function(c){return c.experiment;})));if(h.experiment)el('exp').value=h.experiment;refreshQty();if(h.quantity)el('qty').value=h.quantity;
 if(h.x)el('xaxis').value={iteration:'0',calls:'1',seconds:'2'}[h.x]||'0';if(h.log==='0')el('ylog').checked=false;if(h.bands==='0')el('bands').checked=false;if(h.filter)el('filter').value=h.filter;
 refreshMethods();
 el('exp').addEventListener('change',function(){refreshQty();refreshMethods();draw();});
 ['qty','xaxis','ylog','xlog','bands'].forEach(function(id){el(id).addEventListener('change',draw);});el('filter').addEventListener('input',draw);
 draw();document.body.setAttribute('data-curves-before',document.body.getAttribute('data-curves'));
 if(h.toggle)h.toggle.split(',').forEach(function(m){var i=document.querySelector("#methods input[data-method='"+m+"']");if(i)i.click();});});
</script></body></html>
"""
