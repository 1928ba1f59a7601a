"""Hand-written SVG charts, one file per scenario, one panel per implementation (ours above, the
boto3 baseline below, same axes): from connect-sim's per-second timeline, a polyline of the
workers' accepted StartChatContact calls per second, a dashed line at the rate the quota leaves to
the workers (for capacity: the chat capacity), red bars for the workers' 429s per second, and for
the noisy neighbour the other caller's accepted calls (grey line) and refusals (orange bars).
"""

from xml.sax.saxutils import escape

W, PANEL_H = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 50, 20, 28, 34


def _nice_max(v):
    for step in (5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if v <= step:
            return step
    return v


def _panel(y0, label, m, x_max, y_max, scn):
    tl = m["timeline"]
    pw, ph = W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    sx = lambda s: LEFT + pw * s / max(x_max, 1)  # noqa: E731
    sy = lambda v: y0 + TOP + ph - ph * min(v, y_max) / y_max  # noqa: E731
    out = [f'<text x="{LEFT}" y="{y0 + 18}" font-size="13" font-weight="bold">{escape(label)}</text>']
    # Axes and grid.
    for i in range(0, 6):
        v = y_max * i / 5
        y = sy(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{v:g}</text>')
    step = 5 if x_max <= 60 else 10 if x_max <= 150 else 30
    for s in range(0, int(x_max) + 1, step):
        x = sx(s)
        out.append(f'<line x1="{x:.1f}" y1="{sy(0):.1f}" x2="{x:.1f}" y2="{sy(0) + 4:.1f}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{sy(0) + 15:.1f}" font-size="10" text-anchor="middle">{s}</text>')
    out.append(f'<line x1="{LEFT}" y1="{sy(0):.1f}" x2="{W - RIGHT}" y2="{sy(0):.1f}" stroke="#333"/>')
    out.append(f'<line x1="{LEFT}" y1="{sy(0):.1f}" x2="{LEFT}" y2="{sy(y_max):.1f}" stroke="#333"/>')
    bw = max(pw / max(x_max, 1) * 0.8, 1)
    # 429 bars (workers), other caller's refusals offset beside them.
    for s, r in enumerate(tl["refused"]):
        if r:
            out.append(f'<rect x="{sx(s):.1f}" y="{sy(r):.1f}" width="{bw / 2:.1f}" height="{sy(0) - sy(r):.1f}" '
                       f'fill="#d62728" opacity="0.8"><title>second {s}: {r} refused (429)</title></rect>')
    for s, r in enumerate(tl["background_refused"]):
        if r:
            out.append(f'<rect x="{sx(s) + bw / 2:.1f}" y="{sy(r):.1f}" width="{bw / 2:.1f}" '
                       f'height="{sy(0) - sy(r):.1f}" fill="#ff7f0e"><title>second {s}: other caller refused {r}'
                       f'</title></rect>')
    # Quota lines.
    for value, text in scn["chart_lines"]:
        y = sy(value)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#2ca02c" '
                   f'stroke-dasharray="6 4"/>')
        out.append(f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" font-size="10" text-anchor="end" '
                   f'fill="#2ca02c">{escape(text)}</text>')
    if any(tl["background_accepted"]):
        pts = " ".join(f"{sx(s + 0.5):.1f},{sy(a):.1f}" for s, a in enumerate(tl["background_accepted"]))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#888" stroke-width="1.5"/>')
    if any(tl.get("associate_accepted") or []):
        pts = " ".join(f"{sx(s + 0.5):.1f},{sy(a):.1f}" for s, a in enumerate(tl["associate_accepted"]))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#9467bd" stroke-width="2"/>')
        for s, r in enumerate(tl.get("associate_refused") or []):
            if r:
                out.append(f'<rect x="{sx(s) + bw / 2:.1f}" y="{sy(r):.1f}" width="{bw / 2:.1f}" '
                           f'height="{sy(0) - sy(r):.1f}" fill="#8c564b"><title>second {s}: {r} association 429s'
                           f'</title></rect>')
    pts = " ".join(f"{sx(s + 0.5):.1f},{sy(a):.1f}" for s, a in enumerate(tl["accepted"]))
    out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for what, r, at in m.get("events") or []:
        if what in ("kill", "restart") or (what == "start" and at > 0.5):
            x = sx(at)
            out.append(f'<line x1="{x:.1f}" y1="{sy(0):.1f}" x2="{x:.1f}" y2="{sy(y_max):.1f}" stroke="#555" '
                       f'stroke-dasharray="2 3"/><text x="{x + 3:.1f}" y="{sy(y_max) + 10:.1f}" font-size="9" '
                       f'fill="#555">{escape(what)} {r}</text>')
    outage = scn.get("outage")
    if outage:
        x1, x2 = sx(outage[0]), sx(outage[1])
        out.append(f'<rect x="{x1:.1f}" y="{sy(y_max):.1f}" width="{x2 - x1:.1f}" height="{sy(0) - sy(y_max):.1f}" '
                   f'fill="#999" opacity="0.15"><title>results queue refuses</title></rect>')
    return out


def render(scn_name, scn, runs):
    """`runs`: list of (label, metrics) in panel order. Returns the SVG text."""
    x_max = max((len(m["timeline"]["accepted"]) for _, m in runs), default=1)
    peak = max([v for _, m in runs for k in ("accepted", "refused", "background_accepted", "background_refused")
                for v in m["timeline"][k]] + [v for v, _ in scn["chart_lines"]] + [1])
    y_max = _nice_max(peak * 1.1)
    h = PANEL_H * len(runs) + 56
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
           f'font-family="sans-serif">',
           f'<rect width="{W}" height="{h}" fill="white"/>']
    for i, (label, m) in enumerate(runs):
        out += _panel(i * PANEL_H, f"{scn_name}: {label}", m, x_max, y_max, scn)
    ly = h - 34
    legend = [("#1f77b4", "line", "accepted/s (workers)"), ("#d62728", "bar", "429s/s (workers)"),
              ("#2ca02c", "dash", "rate left to the workers")]
    if any(any(m["timeline"].get("associate_accepted") or []) for _, m in runs):
        legend += [("#9467bd", "line", "associations accepted/s"), ("#8c564b", "bar", "association 429s/s")]
    if any(any(m["timeline"]["background_accepted"]) for _, m in runs):
        legend += [("#888", "line", "other caller accepted/s"), ("#ff7f0e", "bar", "other caller refused/s")]
    x = LEFT
    for color, kind, text in legend:
        if x + 30 + 6 * len(text) > W - RIGHT:  # wrap to a second row
            x, ly = LEFT, ly + 16
        if kind == "bar":
            out.append(f'<rect x="{x}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="6 4"' if kind == "dash" else ""
            out.append(f'<line x1="{x}" y1="{ly - 4}" x2="{x + 18}" y2="{ly - 4}" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 22}" y="{ly}" font-size="11">{escape(text)}</text>')
        x += 30 + 6 * len(text)
    out.append(f'<text x="{W - RIGHT}" y="{h - 2}" font-size="10" text-anchor="end">seconds since the workers '
               f'started (connect-sim timeline)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
