"""`netdebug report` and the HTML picture of a probe run (`probe --report`, `plan --report`).

Pure core, report JSON in, page text out:
  model       JSON report -> typed ProbeView (every field checked, ReportError names the bad one)
  kinds       path kind -> how it is drawn (one table, generic fallback for new kinds)
  graph       ProbeView -> Graph: caller -> path -> Service -> version -> pod, shares and counts
  layout      Graph -> coordinates (fixed layered layout)
  svg         the graph as inline SVG; charts: the split's error bars and latency histograms
  page        the probe page (sections, tables, legend); plan_page: a plan's steps; style: CSS
  render      any report -> page;  markup: escaping HTML/SVG builder
Edge:
  command     `netdebug report FILE.json -o FILE.html`, and write_report() for probe/plan
"""
