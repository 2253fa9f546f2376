"""The page of the ``html`` reporter: a Jinja2 template with its style and script.

Kept apart from :mod:`plugins.reports.html`, which computes what the page shows (the
pictures' geometry included); this module only lays it out. The template is rendered
with autoescaping on, so every value from the document is HTML-escaped wherever it is
put; only this module's own style and script are marked safe. The script sorts and filters the layer table; it reads
the page, never a string of the document, and the page works without it (the status
check boxes filter by CSS alone where a browser supports ``:has``). No URL outside the
page is ever referenced: no font, image, style sheet or script is loaded.
"""

STYLE = """
:root { --red: #cf222e; --amber: #bf8700; --green: #1a7f37; --blue: #0969da; --orange: #bc4c00; --grey: #8c959f; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #fff; }
main { padding: 0 24px 24px; }
h2 { font-size: 17px; margin: 18px 0 6px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: break-word; }
.verdict { padding: 12px 24px; color: #fff; }
.verdict h1 { margin: 0; font-size: 22px; }
.verdict p { margin: 2px 0 0; }
.verdict code { color: inherit; }
.verdict.faithful { background: var(--green); }
.verdict.differs { background: var(--red); }
.verdict.incomplete { background: #9a6700; }
.summary { margin: 10px 0 4px; font-size: 13px; max-width: 190ch; }
.facts { color: #656d76; font-size: 12.5px; margin: 0; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
svg .axis { stroke: #d0d7de; }
svg .tol { stroke: var(--red); stroke-dasharray: 4 3; }
svg .tol-label { fill: var(--red); }
svg .b-ok { fill: var(--grey); }
svg .b-mismatch, svg .b-bad { fill: var(--red); }
svg .b-unmatched { fill: var(--amber); }
svg .band-mismatch { fill: var(--red); opacity: .12; }
svg .band-unmatched { fill: var(--amber); opacity: .18; }
svg .label-mismatch { fill: var(--red); font-weight: 600; }
svg .label-unmatched { fill: #9a6700; font-weight: 600; }
svg .r-source { fill: var(--blue); }
svg .r-target { fill: var(--orange); }
svg .r-reproduced { fill: none; stroke: var(--green); stroke-width: 1.5; }
svg .zero { stroke: #57606a; }
.strip svg { width: 100%; height: auto; display: block; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d0d7de; border-left: 4px solid var(--red); border-radius: 6px; padding: 8px 12px; }
.card.unmatched { border-left-color: var(--amber); }
.card h3 { margin: 0 0 2px; font-size: 14px; }
.card p { margin: 2px 0; }
.card .pictures { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.card figure { margin: 4px 0 0; }
.card figcaption { font-size: 12px; color: #57606a; }
.legend span { margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 18px; height: 8px; margin-right: 4px; vertical-align: middle; }
.legend .l-source { background: var(--blue); }
.legend .l-target { background: var(--orange); }
.legend .l-reproduced { border: 1.5px solid var(--green); height: 5px; }
.reason { color: #9a6700; }
.mismatch-text { color: var(--red); }
table { border-collapse: collapse; margin: 8px 0 16px; }
.scroll { overflow-x: auto; }
svg .b-exact { fill: #c6cbd1; }
th, td { border: 1px solid #d0d7de; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
th[data-sort] { cursor: pointer; }
th[data-sort]::after { content: " \\2195"; color: #8c959f; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ranges { white-space: nowrap; font-variant-numeric: tabular-nums; font-size: 11.5px; line-height: 1.25; }
td.ranges svg { vertical-align: middle; margin-right: 6px; }
.r-text { display: inline-block; vertical-align: middle; }
.t-source { color: var(--blue); }
.t-target { color: var(--orange); }
.t-reproduced { color: var(--green); }
td.name, td.sources { min-width: 22ch; }
td.param { white-space: nowrap; }
tbody.status-ok td.status { color: var(--green); }
tbody.status-mismatch { background: #ffebe9; }
tbody.status-mismatch td.status { color: var(--red); font-weight: bold; }
tbody.status-unmatched { background: #fff8c5; }
tbody.status-unmatched td.status { color: #9a6700; font-weight: bold; }
tr.param-mismatch td.num { color: var(--red); font-weight: bold; }
.where { color: var(--red); white-space: nowrap; }
.note { color: #656d76; font-size: 12px; }
.filter { border: 0; padding: 0; margin: 0; }
.filter label { margin-right: 12px; }
.filter input[type=search] { width: 28ch; }
body:has(#show-ok:not(:checked)) tbody.status-ok,
body:has(#show-mismatch:not(:checked)) tbody.status-mismatch,
body:has(#show-unmatched:not(:checked)) tbody.status-unmatched,
tbody.filtered-out { display: none; }
.severity-error { color: var(--red); }
.severity-warning { color: #9a6700; }
.severity-info { color: var(--blue); }
footer { color: #656d76; font-size: 12px; margin-top: 24px; }
"""

SCRIPT = """
(function () {
  var table = document.getElementById("layers");
  if (!table) return;
  var search = document.getElementById("search");
  search.addEventListener("input", function () {
    var words = search.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var text = body.getAttribute("data-search");
      var hit = words.every(function (word) { return text.indexOf(word) >= 0; });
      body.classList.toggle("filtered-out", !hit);
    });
  });
  Array.prototype.forEach.call(table.tHead.querySelectorAll("th[data-sort]"), function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort"), numeric = th.hasAttribute("data-numeric");
      var down = th.getAttribute("aria-sort") !== "descending";
      Array.prototype.forEach.call(table.tHead.querySelectorAll("th"), function (other) {
        other.removeAttribute("aria-sort");
      });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var bodies = Array.prototype.slice.call(table.tBodies);
      bodies.sort(function (a, b) {
        var x = a.getAttribute("data-" + key), y = b.getAttribute("data-" + key);
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return down ? -order : order;
      });
      bodies.forEach(function (body) { table.appendChild(body); });
    });
  });
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ style }}</style>
</head>
<body>
<header class="verdict {{ verdict }}">
<h1>graphinspect diff: {{ verdict_label }}</h1>
<p>{{ verdict_line }}</p>
<p><code>{{ source.path }}</code> {{ source.facts }} &rarr; <code>{{ target.path }}</code> {{ target.facts }}</p>
</header>
<main>
<p class="summary">{{ summary }}</p>
<p class="facts">{{ counts }}. {{ tolerance }}.</p>
{% if strip %}
<section class="strip" id="strip">
<h2>Error of each layer, in graph order</h2>
{{ strip_svg(strip) }}
</section>
{% endif %}
{% if cards %}
<section id="problems">
<h2>Problems ({{ problem_count }})</h2>
<div class="cards">
{% for card in cards %}
<div class="card {{ card.status }}">
<h3><a href="#{{ card.anchor }}">{{ card.label }}</a> <code>{{ card.name }}</code></h3>
<p>{{ card.op }}
{%- if card.sources %} from <code>{{ card.sources }}</code>{% endif %}
{%- if card.transform %} via <code>{{ card.transform }}</code>{% endif %}</p>
{% for line in card.reasons %}<p class="reason">{{ line }}</p>{% endfor %}
{% if card.sentence %}<p class="mismatch-text">{{ card.sentence }}</p>{% endif %}
<div class="pictures">
{% for picture in card.channels %}
<figure>{{ channel_svg(picture) }}<figcaption>{{ picture.caption }}</figcaption></figure>
{% endfor %}
{% for picture in card.ranges %}
<figure>{{ ranges_svg(picture) }}<figcaption>{{ picture.caption }}</figcaption></figure>
{% endfor %}
</div>
</div>
{% endfor %}
</div>
{% if more_problems %}<p>{{ more_problems }} more in the table below.</p>{% endif %}
</section>
{% endif %}
{% for group in problem_findings %}
<h2 class="severity-{{ group.severity }}">{{ group.title }} ({{ group.findings|length }})</h2>
<ul>{% for finding in group.findings %}{{ finding_item(finding) }}{% endfor %}</ul>
{% endfor %}
<section id="layers-section">
<h2>Layers</h2>
{% if has_rows %}
<fieldset class="filter"><legend>Show layers</legend>
{% for status in statuses %}
<label><input type="checkbox" id="show-{{ status.name }}" checked>
{{ status.label }} ({{ status.count }})</label>
{% endfor %}
<label>find <input type="search" id="search" placeholder="node, op or module"></label>
</fieldset>
<p class="legend"><span><i class="l-source"></i>PyTorch range</span><span><i class="l-target"></i>ONNX range</span>
<span><i class="l-reproduced"></i>re-computed range</span>(click a header to sort)</p>
<div class="scroll">
<table class="layers" id="layers">
<thead><tr>
{% for column in columns %}
<th{% if column.sort %} data-sort="{{ column.sort }}"{% endif %}{% if column.numeric %} data-numeric{% endif %}>
{{- column.title }}</th>
{% endfor %}
</tr></thead>
{% for layer in rows %}
{{ layer }}{% endfor %}
</table>
</div>
{% else %}
<p>No layers to show.</p>
{% endif %}
{% if hidden %}<p>{{ hidden }}.</p>{% endif %}
{% if notes %}
<h3>Notes</h3>
<ol class="notes">
{% for note in notes %}<li value="{{ note.number }}">{{ note.text }} ({{ note.count }})</li>
{% endfor %}
</ol>
{% endif %}
</section>
{% for group in other_findings %}
<h2 class="severity-{{ group.severity }}">{{ group.title }} ({{ group.findings|length }})</h2>
<ul>{% for finding in group.findings %}{{ finding_item(finding) }}{% endfor %}</ul>
{% endfor %}
{% if unmatched_source %}
<h2>Unmatched PyTorch layers</h2>
<details><summary>{{ unmatched_source|length }} PyTorch layer{{ "s" if unmatched_source|length != 1 }}
not used by the export</summary>
<ul>{% for name in unmatched_source %}<li><code>{{ name }}</code></li>{% endfor %}</ul>
</details>
{% endif %}
<footer>Written by {{ tool.name }} {{ tool.version }} (<code>{{ schema }}</code>).</footer>
</main>
<script>{{ script }}</script>
</body>
</html>
"""

MACROS = """
{% macro axis(ticks, left, right) -%}
{% for tick in ticks %}
<line class="axis" x1="{{ left }}" x2="{{ right }}" y1="{{ tick.y }}" y2="{{ tick.y }}"/>
<text x="{{ left - 4 }}" y="{{ tick.y + 4 }}" text-anchor="end">{{ tick.label }}</text>
{% endfor %}
{%- endmacro %}
{% macro bar_rect(bar) -%}
<rect class="b-{{ bar.status }}" x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.w }}" height="{{ bar.h }}">
{{- "" }}<title>{{ bar.title }}</title></rect>
{%- endmacro %}
{% macro finding_item(f) -%}
<li>{% if f.layer %}<code>{{ f.layer }}</code>: {% endif %}{{ f.message }} (<code>{{ f.code }}</code>)</li>
{%- endmacro %}
{% macro strip_svg(s) -%}
<svg viewBox="0 0 {{ s.width }} {{ s.height }}" role="img" aria-label="{{ s.label }}">
{% for band in s.bands %}
<rect class="band-{{ band.status }}" x="{{ band.x }}" y="{{ s.top }}" width="{{ band.w }}"
 height="{{ s.plot_height }}"/>
{% endfor %}
{{ axis(s.ticks, s.left, s.right) }}
{% for bar in s.bars %}
<a href="#{{ bar.anchor }}">{{ bar_rect(bar) }}</a>
{% endfor %}
<line class="tol" x1="{{ s.left }}" x2="{{ s.right }}" y1="{{ s.tolerance.y }}" y2="{{ s.tolerance.y }}"/>
<text class="tol-label" x="{{ (s.left + s.right) / 2 }}" y="{{ s.height - 4 }}" text-anchor="middle">
{{- "- - - " ~ s.tolerance.label }}</text>
{% for label in s.labels %}
<text class="label-{{ label.status }}" x="{{ label.x }}" y="{{ label.y }}" text-anchor="{{ label.anchor }}">
{{- label.text }}</text>
{% endfor %}
<text x="{{ s.left }}" y="{{ s.height - 4 }}">{{ s.first }}</text>
<text x="{{ s.right }}" y="{{ s.height - 4 }}" text-anchor="end">{{ s.last }}</text>
</svg>
{%- endmacro %}
{% macro channel_svg(c) -%}
<svg width="{{ c.width }}" height="{{ c.height }}" viewBox="0 0 {{ c.width }} {{ c.height }}" role="img"
 aria-label="{{ c.caption }}">
{{ axis(c.ticks, c.left, c.right) }}
{% for bar in c.bars %}
{{ bar_rect(bar) }}
{% endfor %}
<line class="tol" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ c.tolerance.y }}" y2="{{ c.tolerance.y }}"/>
{% for label in c.labels %}
<text class="label-mismatch" x="{{ label.x }}" y="{{ label.y }}" text-anchor="middle">{{ label.text }}</text>
{% endfor %}
<text x="{{ c.left }}" y="{{ c.height - 2 }}">channel 0</text>
<text x="{{ c.right }}" y="{{ c.height - 2 }}" text-anchor="end">{{ c.last }}</text>
</svg>
{%- endmacro %}
{% macro ranges_svg(r) -%}
<svg width="{{ r.width }}" height="{{ r.height }}" viewBox="0 0 {{ r.width }} {{ r.height }}" role="img"
 aria-label="{{ r.label }}">
<line class="zero" x1="{{ r.zero }}" x2="{{ r.zero }}" y1="0" y2="{{ r.height }}"/>
{% for bar in r.bars %}
<rect class="r-{{ bar.kind }}" x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.w }}" height="{{ bar.h }}">
{{- "" }}<title>{{ bar.title }}</title></rect>
{% if bar.text %}<text x="{{ bar.text_x }}" y="{{ bar.y + bar.h - 1 }}">{{ bar.text }}</text>{% endif %}
{% endfor %}
</svg>
{%- endmacro %}
"""
