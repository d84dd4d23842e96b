"""The page's one stylesheet, inlined into every page.

Colours carry meaning only together with a dash pattern, an icon or words (see kinds.py). The print
rules turn every colour to black on white, except a mid grey for "mixed or other paths" (the one
solid line besides "routed"); dash patterns, hatching and labels keep the picture readable on a
black-and-white printer. No `<` or `&` here: the page is also well-formed XML.
"""

from __future__ import annotations

from typing import Final

CSS: Final = """
:root { --ink: #1d232b; --muted: #5b6470; --line: #c9ced6; --bg: #ffffff; --panel: #f5f7fa;
  --routed: #2c4a6e; --unrouted: #c1121f; --local: #9a5b00; --error: #b00020; --neutral: #5b6470;
  --pass: #1b7f3b; --fail: #c1121f; --inconclusive: #9a5b00; --none: #5b6470; --lock: #1b7f3b; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1320px; padding: 16px 20px 32px; color: var(--ink); background: var(--bg);
  font: 14px/1.45 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; }
h1 { font-size: 20px; margin: 0 0 10px; }
h1 .url { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-weight: normal; word-break: break-all; }
h2, h3 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
section.step > h2 { font-size: 19px; border-bottom: 2px solid var(--ink); }
section.step h3 { font-size: 16px; }
.banner { border: 2px solid currentColor; border-left-width: 10px; border-radius: 6px; padding: 8px 14px;
  background: var(--panel); }
.banner p { margin: 2px 0; } .banner .verdict { font-size: 20px; font-weight: bold; }
.verdict-pass { color: var(--pass); } .verdict-fail { color: var(--fail); }
.verdict-inconclusive { color: var(--inconclusive); } .verdict-none { color: var(--none); }
.verdict-error, .verdict-interrupted, .verdict-skipped { color: var(--none); }
.banner .facts, .banner .verdict-why, .banner .message { color: var(--ink); }
.verdict-fail { border-style: double; } .verdict-inconclusive { border-style: dashed; }
.warnings { margin: 10px 0; } .warning { margin: 6px 0; padding: 6px 10px; border: 2px dashed var(--unrouted);
  border-radius: 6px; color: var(--ink); }
.warning strong { color: var(--unrouted); }
figure { margin: 8px 0; } .scroll { overflow-x: auto; }
svg { max-width: 100%; height: auto; font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; }
svg text { font-size: 12px; fill: var(--ink); }
svg .column-title { font-size: 12px; font-weight: bold; fill: var(--muted); text-transform: uppercase;
  letter-spacing: 0.06em; }
.node-box { fill: var(--panel); stroke: var(--neutral); stroke-width: 1.5; }
.role-caller .node-box, .role-service .node-box { stroke-width: 2.5; }
.node.tone-routed .node-box { stroke: var(--routed); }
.node.tone-unrouted .node-box { stroke: var(--unrouted); }
.node.tone-local .node-box { stroke: var(--local); } .node.tone-error .node-box { stroke: var(--error); }
.node-label { font-weight: bold; } .node-detail { fill: var(--muted); font-size: 11px; }
.edge-line { fill: none; stroke-linecap: butt; }
.tone-routed .edge-line, .arrow.tone-routed { stroke: var(--routed); fill: var(--routed); }
.tone-unrouted .edge-line, .arrow.tone-unrouted { stroke: var(--unrouted); fill: var(--unrouted); }
.tone-local .edge-line, .arrow.tone-local { stroke: var(--local); fill: var(--local); }
.tone-error .edge-line, .arrow.tone-error { stroke: var(--error); fill: var(--error); }
.tone-neutral .edge-line, .arrow.tone-neutral { stroke: var(--neutral); fill: var(--neutral); }
.edge .edge-line { fill: none; } .arrow { stroke: none; }
.edge-text { font-size: 11px; paint-order: stroke; stroke: var(--bg); stroke-width: 4px;
  stroke-linejoin: round; }
.edge-share { font-size: 12px; font-weight: bold; }
.edge-label.tone-unrouted .edge-text { fill: var(--unrouted); }
.lock-shackle { fill: none; stroke: var(--lock); stroke-width: 1.8; } .lock-body { fill: var(--lock); }
.lock-hole { fill: var(--bg); }
.legend { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-wrap: wrap; gap: 4px 18px;
  font-size: 13px; }
.legend li { margin: 0; } .swatch { vertical-align: middle; }
.note { color: var(--muted); font-style: italic; }
.grid { stroke: var(--line); stroke-width: 1; } .tick { fill: var(--muted); font-size: 11px; }
.hatch-bg { fill: #e8f0e8; } .hatch-line { stroke: #7fa67f; stroke-width: 2; }
.band { stroke: #7fa67f; stroke-width: 1; }
.expected { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 4 3; } .expected-mark { fill: var(--bg);
  stroke: var(--ink); stroke-width: 1.5; }
.ci { stroke: var(--ink); stroke-width: 2; } .observed { fill: var(--ink); }
.row-label { font-weight: bold; }
.row-value { font-family: "DejaVu Sans Mono", monospace; font-size: 11.5px; }
.bar { fill: var(--routed); } .baseline { stroke: var(--ink); stroke-width: 1; }
.mark { stroke: var(--ink); stroke-width: 1.5; } .mark.p99 { stroke-dasharray: 3 2; }
.mark-text { font-size: 10px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
caption { text-align: left; font-weight: bold; padding: 2px 0 4px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pair { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
table.steps td:nth-child(3) { font-weight: bold; }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
  padding-top: 6px; }
@media print {
  :root { --ink: #000; --muted: #000; --line: #888; --panel: #fff; --routed: #000; --unrouted: #000;
    --local: #000; --error: #000; --neutral: #777; --pass: #000; --fail: #000; --inconclusive: #000;
    --none: #000; --lock: #000; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  .scroll { overflow: visible; }
  .hatch-bg { fill: #fff; } .hatch-line { stroke: #000; stroke-width: 1; } .band { stroke: #000; }
  .bar { fill: #555; }
  section { break-inside: avoid-page; } table { break-inside: auto; }
  section.step { break-before: page; }
}
"""
