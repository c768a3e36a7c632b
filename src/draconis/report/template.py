"""The report's Jinja2 template (autoescaped HTML; pictures are files in the report's folder)."""
from __future__ import annotations

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>draconis report: {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eef2f7; } td.text, th.text { text-align: left; }
tr.stage td { color: #555; font-style: italic; } tr.bad td { background: #fde8e8; }
figure { display: inline-block; width: 48%; margin: 0.5em 1% 0.5em 0; vertical-align: top; }
figure.wide { width: 97%; } figure img { width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.note { color: #555; font-size: 0.85em; } code { background: #f4f4f4; padding: 0 3px; }
</style>
</head>
<body>
<h1>draconis report: {{ title }}</h1>
<p class="note">Written {{ written }} by draconis {{ record.version }}. Every plot's numbers are in the table beside it.</p>

<h2 id="run">The run</h2>
<table id="run-table">
{% for key, value in run_rows %}<tr><th class="text">{{ key }}</th><td class="text">{{ value }}</td></tr>
{% endfor %}</table>

<h3>Parameters that differ from the defaults</h3>
{% if params %}<table id="params-table"><tr><th class="text">primitive</th><th class="text">parameter</th><th class="text">value</th><th class="text">set by</th></tr>
{% for row in params %}<tr><td class="text">{{ row.primitive }}</td><td class="text">{{ row.name }}</td><td class="text">{{ row.value }}</td><td class="text">{{ row.source }}</td></tr>
{% endfor %}</table>{% else %}<p>None: every primitive ran with its defaults.</p>{% endif %}

<h3>Calibrations used</h3>
{% if calibrations %}<table id="calibrations-table"><tr><th class="text">type</th><th class="text">file</th><th class="text">md5</th></tr>
{% for c in calibrations %}<tr><td class="text">{{ c.caltype }}</td><td class="text">{{ c.path }}</td><td class="text"><code>{{ c.md5 }}</code></td></tr>
{% endfor %}</table>{% else %}<p>None.</p>{% endif %}

<h3>Scheduler and workers</h3>
<table id="workers-table"><tr><th class="text">worker</th><th>threads</th><th>memory limit</th><th>peak memory</th><th>spilled to disk</th></tr>
{% for w in workers %}<tr><td class="text">{{ w.name }}</td><td>{{ w.threads }}</td><td>{{ w.limit }}</td><td>{{ w.peak }}</td><td>{{ w.spilled }}</td></tr>
{% endfor %}</table>

<h3>Time per primitive</h3>
<figure class="wide"><img src="{{ figures.times }}" alt="time per primitive"><figcaption>Wall time of each primitive the recipe called (table: the same seconds, with the compute stages inside each).</figcaption></figure>
<table id="times-table"><tr><th class="text">primitive / compute stage</th><th>calls</th><th>frames in</th><th>frames out</th><th>time (s)</th><th>%</th></tr>
{% for row in times %}<tr{% if row.stage %} class="stage"{% endif %}><td class="text">{{ row.name }}</td><td>{{ row.calls }}</td><td>{{ row.frames_in }}</td><td>{{ row.frames_out }}</td><td>{{ row.seconds }}</td><td>{{ row.percent }}</td></tr>
{% endfor %}</table>

{% if frame_rows %}
<h2 id="frames">Per frame</h2>
<div>
{% for key in ("sky", "fwhm", "sources", "scaling") %}{% if figures[key] %}<figure><img src="{{ figures[key] }}" alt="{{ key }}"><figcaption>{{ captions[key] }}</figcaption></figure>{% endif %}
{% endfor %}</div>
<table id="frames-table"><tr>{% for heading in frame_headings %}<th class="text">{{ heading }}</th>{% endfor %}</tr>
{% for row in frame_rows %}<tr{% if row.bad %} class="bad"{% endif %}>{% for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h3>Frames left out</h3>
{% if left_out %}<table id="left-out-table"><tr><th class="text">frame</th><th class="text">why</th></tr>
{% for name, why in left_out %}<tr><td class="text">{{ name }}</td><td class="text">{{ why }}</td></tr>
{% endfor %}</table>{% else %}<p>None: every object frame is in the stack.</p>{% endif %}
{% endif %}

{% if figures.dither %}
<h2 id="dither">Dither pattern</h2>
<figure class="wide"><img src="{{ figures.dither }}" alt="dither pattern"><figcaption>Left: telescope offsets p, q as the headers give them. Right: each frame's centre after adjustWCSToReference, relative to the reference frame, coloured by how it was aligned (numbers: the frame table's p, q, ΔRA, ΔDec and WCS shift columns).</figcaption></figure>
{% endif %}

{% if stack %}
<h2 id="stack">The stack: {{ stack.name }}</h2>
<figure><img src="{{ figures.stack }}" alt="stack quick look"><figcaption>zscale {{ stack.limits }}; DQ-flagged pixels in magenta.</figcaption></figure>
{% if figures.depth %}<figure><img src="{{ figures.depth }}" alt="depth map"><figcaption>Frames covering each pixel (binned {{ stack.depth_bin }}x{{ stack.depth_bin }}), from each combined frame's aligned WCS and array size; pixels flagged in the stack in grey (a single frame's flagged pixels are not subtracted).</figcaption></figure>{% endif %}
<figure><img src="{{ figures.residual }}" alt="background residual map"><figcaption>Background after masking sources (S/N &gt; {{ stack.source_sigma }}, grown {{ stack.source_grow }} px) and flagged pixels, binned {{ stack.stats.bin }}x{{ stack.stats.bin }}; limits ±3 sigma of the binned map.</figcaption></figure>
<figure><img src="{{ figures.histogram }}" alt="normalised residual histogram"><figcaption>SCI/sqrt(VAR) of the same background pixels against the unit Gaussian of pure noise.</figcaption></figure>
<table id="stack-table"><tr><th class="text">quantity</th><th>value</th></tr>
{% for key, value in stack.rows %}<tr><td class="text">{{ key }}</td><td>{{ value }}</td></tr>
{% endfor %}</table>
{% if stack.depth_rows %}<table id="depth-table"><tr><th>frames</th><th>binned pixels</th></tr>
{% for n, count in stack.depth_rows %}<tr><td>{{ n }}</td><td>{{ count }}</td></tr>
{% endfor %}</table>{% endif %}
{% endif %}

{% if cal_pictures %}
<h2 id="calibrations">Calibrations</h2>
{% for c in cal_pictures %}<h3>{{ c.caltype }}: {{ c.name }}</h3>
<figure><img src="{{ c.src }}" alt="{{ c.name }}"><figcaption>zscale {{ c.limits }}; flagged pixels in magenta.</figcaption></figure>
<table class="calstats"><tr><th>array</th><th>shape</th><th>mean</th><th>median</th><th>std</th><th>flagged %</th></tr>
{% for s in c.stats %}<tr><td>{{ s.array }}</td><td>{{ s.shape }}</td><td>{{ s.mean }}</td><td>{{ s.median }}</td><td>{{ s.std }}</td><td>{{ s.flagged_percent }}</td></tr>
{% endfor %}</table>
{% endfor %}
{% endif %}

<h2 id="outputs">Outputs</h2>
<ul>{% for o in record.outputs %}<li><code>{{ o }}</code></li>{% endfor %}</ul>
<p class="note">The numbers of this report are also in <a href="{{ json_name }}">{{ json_name }}</a>.</p>
</body>
</html>
"""
