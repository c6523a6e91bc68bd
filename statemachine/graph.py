"""Draw a state machine from its ASL: a layered (Sugiyama-style) layout rendered to SVG, PNG
(Pillow) or a standalone HTML page, optionally coloured by each state's status in an execution.

Edges: ``Next`` (solid), Choice rules (labelled with the condition) and ``Default``, Catch
(dashed orange, routed along a "catch bus" on the right so a dozen of them stay readable), and
loop-back edges such as the poll loops (curved, on the left). Parallel/Map states are drawn as one
node. No graphviz needed: the layout is small and deterministic.
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

START, END = "__start__", "__end__"
NODE_H, LAYER_GAP, NODE_GAP, MARGIN = 40, 34, 28, 24
CHAR_W, MIN_W = 7.4, 120
FONT = "Helvetica, Arial, sans-serif"

# (fill, stroke) per execution status; "idle" is a definition drawn without an execution.
STATUS_COLORS: dict[str, tuple[str, str]] = {
    "succeeded": ("#d3f9d8", "#2b8a3e"),
    "running": ("#fff3bf", "#e67700"),
    "failed": ("#ffc9c9", "#c92a2a"),
    "caught": ("#ffe8cc", "#d9480f"),
    "aborted": ("#e9ecef", "#495057"),
    "timed_out": ("#ffc9c9", "#862e9c"),
    "not_run": ("#ffffff", "#adb5bd"),
}
TYPE_COLORS: dict[str, tuple[str, str]] = {
    "Task": ("#e7f5ff", "#1c7ed6"), "Choice": ("#fff9db", "#f08c00"),
    "Wait": ("#f1f3f5", "#868e96"), "Pass": ("#f1f3f5", "#868e96"),
    "Succeed": ("#ebfbee", "#2f9e44"), "Fail": ("#fff5f5", "#e03131"),
    "Parallel": ("#f3f0ff", "#7048e8"), "Map": ("#f3f0ff", "#7048e8"),
}
EDGE_COLOR, CATCH_COLOR, LOOP_COLOR = "#495057", "#e8590c", "#1971c2"


@dataclass
class Node:
    name: str
    kind: str  # ASL type, or "start"/"end"/"dummy"
    width: float = 0.0
    layer: int = 0
    x: float = 0.0
    y: float = 0.0

    @property
    def height(self) -> float:
        return {"start": 20, "end": 20, "dummy": 0}.get(self.kind, NODE_H)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # next | choice | default | catch
    label: str = ""
    back: bool = False
    path: list[str] = field(default_factory=list)  # dummy nodes a long edge passes through


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float
    catch_bus: dict[str, float]  # catch target → x of its bus


# -- reading the ASL -----------------------------------------------------------------------
def condition_text(rule: dict) -> str:
    """A short human form of a Choice rule: ``$.status == "Completed"``."""
    for combinator in ("And", "Or"):
        if combinator in rule:
            return f" {combinator.lower()} ".join(condition_text(r) for r in rule[combinator])
    if "Not" in rule:
        return f"not ({condition_text(rule['Not'])})"
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"])
    variable = rule.get("Variable", "")
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        operator = key.removesuffix("Path")
        shown = value if key.endswith("Path") else repr(value).replace("'", '"')
        if operator.startswith("Is"):
            return f"{variable} {operator[2:].lower()}" + ("" if value else " (false)")
        symbol = {"Equals": "==", "LessThan": "<", "GreaterThan": ">", "LessThanEquals": "<=",
                  "GreaterThanEquals": ">=", "Matches": "~"}
        suffix = next((s for s in symbol if operator.endswith(s)), operator)
        return f"{variable} {symbol.get(suffix, suffix)} {shown}"
    return "?"


def edges_of(definition: dict) -> list[Edge]:
    edges = [Edge(START, definition["StartAt"], "next")]
    for name, state in definition["States"].items():
        for rule in state.get("Choices", []):
            edges.append(Edge(name, rule["Next"], "choice", _short(condition_text(rule))))
        if "Default" in state:
            edges.append(Edge(name, state["Default"], "default", "default"))
        if "Next" in state:
            edges.append(Edge(name, state["Next"], "next"))
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            edges.append(Edge(name, END, "next"))
        for catcher in state.get("Catch", []):
            edges.append(Edge(name, catcher["Next"], "catch", ", ".join(catcher["ErrorEquals"])))
    return edges


def _short(text: str, limit: int = 42) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- layout --------------------------------------------------------------------------------
def layout(definition: dict) -> Layout:
    nodes = {START: Node(START, "start", 20), END: Node(END, "end", 20)}
    for name, state in definition["States"].items():
        nodes[name] = Node(name, state["Type"], max(MIN_W, CHAR_W * len(name) + 28))
    edges = edges_of(definition)
    _mark_back_edges(nodes, edges)
    _assign_layers(nodes, edges)
    order = _order_layers(nodes, edges)
    _assign_coordinates(nodes, edges, order)
    right = max(n.x + n.width / 2 for n in nodes.values())
    catch_bus = {t: right + 26 + 14 * i for i, t in
                 enumerate(dict.fromkeys(e.target for e in edges if e.kind == "catch"))}
    width = max([right, *catch_bus.values()]) + MARGIN + 8
    height = max(n.y + n.height / 2 for n in nodes.values()) + MARGIN
    return Layout(nodes, edges, width, height, catch_bus)


def _mark_back_edges(nodes: dict[str, Node], edges: list[Edge]) -> None:
    """Depth-first from Start; an edge into a node still on the stack closes a loop."""
    outgoing: dict[str, list[Edge]] = defaultdict(list)
    for edge in edges:
        outgoing[edge.source].append(edge)
    state: dict[str, int] = {}  # 1 on stack, 2 done

    def visit(name: str) -> None:
        state[name] = 1
        for edge in outgoing[name]:
            if state.get(edge.target) == 1:
                edge.back = True
            elif edge.target not in state:
                visit(edge.target)
        state[name] = 2

    for name in nodes:  # Start first, then anything unreachable from it
        if name not in state:
            visit(name)


def _assign_layers(nodes: dict[str, Node], edges: list[Edge]) -> None:
    """Longest path from Start over the forward edges; End goes below everything."""
    forward = [e for e in edges if not e.back]
    indegree = defaultdict(int)
    for edge in forward:
        indegree[edge.target] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    while ready:
        name = ready.pop(0)
        for edge in forward:
            if edge.source == name:
                nodes[edge.target].layer = max(nodes[edge.target].layer, nodes[name].layer + 1)
                indegree[edge.target] -= 1
                if indegree[edge.target] == 0:
                    ready.append(edge.target)
    nodes[END].layer = max(n.layer for n in nodes.values() if n.name != END) + 1


def _order_layers(nodes: dict[str, Node], edges: list[Edge]) -> list[list[str]]:
    """Dummy nodes for long forward edges, then barycentre sweeps to reduce crossings."""
    for number, edge in enumerate(edges):
        if edge.back or edge.kind == "catch":
            continue
        low, high = nodes[edge.source].layer, nodes[edge.target].layer
        for layer in range(low + 1, high):
            dummy = f"__dummy_{number}_{layer}"
            nodes[dummy] = Node(dummy, "dummy", 8, layer)
            edge.path.append(dummy)
    layers: list[list[str]] = [[] for _ in range(max(n.layer for n in nodes.values()) + 1)]
    for name, node in nodes.items():  # definition order is a good first guess
        layers[node.layer].append(name)
    links = _links(edges)
    for sweep in range(6):
        downward = sweep % 2 == 0
        sequence = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for index in sequence:
            neighbour = layers[index - 1] if downward else layers[index + 1]
            position = {name: i for i, name in enumerate(neighbour)}
            current = {name: i for i, name in enumerate(layers[index])}
            side = "up" if downward else "down"
            layers[index].sort(key=lambda name, side=side, position=position, current=current: _mean(
                [position[n] for n in links[side][name] if n in position], current[name]))
    return layers


def _links(edges: list[Edge]) -> dict[str, dict[str, list[str]]]:
    """Neighbours through forward non-catch edges (dummies included): up and down."""
    links: dict[str, dict[str, list[str]]] = {"up": defaultdict(list), "down": defaultdict(list)}
    for edge in edges:
        if edge.back or edge.kind == "catch":
            continue
        chain = [edge.source, *edge.path, edge.target]
        for upper, lower in zip(chain, chain[1:], strict=False):
            links["down"][upper].append(lower)
            links["up"][lower].append(upper)
    return links


def _assign_coordinates(nodes: dict[str, Node], edges: list[Edge], layers: list[list[str]]) -> None:
    links = _links(edges)
    for index, layer in enumerate(layers):
        cursor = 0.0
        for name in layer:
            node = nodes[name]
            node.x, cursor = cursor + node.width / 2, cursor + node.width + NODE_GAP
            node.y = MARGIN + index * (NODE_H + LAYER_GAP) + NODE_H / 2
    for sweep in range(8):
        downward = sweep % 2 == 0
        for layer in (layers if downward else reversed(layers)):
            side = "up" if downward else "down"
            wanted = [_mean([nodes[n].x for n in links[side][name]], nodes[name].x) for name in layer]
            _pack(nodes, layer, wanted)
    shift = MARGIN - min(n.x - n.width / 2 for n in nodes.values()) + 40  # room for loop curves
    for node in nodes.values():
        node.x += shift


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _pack(nodes: dict[str, Node], layer: list[str], wanted: list[float]) -> None:
    """Place a layer's nodes near their wanted x, in order, never overlapping."""
    placed: list[float] = []
    for i, name in enumerate(layer):
        x = wanted[i]
        if placed:
            previous = nodes[layer[i - 1]]
            x = max(x, placed[-1] + (previous.width + nodes[name].width) / 2 + NODE_GAP)
        placed.append(x)
    drift = _mean(wanted, 0) - _mean(placed, 0)  # re-centre: packing only ever pushes right
    for name, x in zip(layer, placed, strict=True):
        nodes[name].x = x + drift


# -- geometry shared by SVG and PNG ---------------------------------------------------------
def edge_geometry(lay: Layout, edge: Edge, index: int) -> list[tuple[float, float]]:
    """Control polygon of an edge as cubic Bézier segments: [p0, c1, c2, p1, c1, c2, p2, ...]."""
    nodes = lay.nodes
    source, target = nodes[edge.source], nodes[edge.target]
    if edge.kind == "catch":
        bus = lay.catch_bus[edge.target]
        start = (source.x + source.width / 2, source.y)
        end = (target.x + target.width / 2, target.y)
        return _polyline_as_curves([start, (bus, start[1]), (bus, end[1]), end])
    if edge.back:
        left = min(source.x - source.width / 2, target.x - target.width / 2) - 18 - 7 * (index % 4)
        start = (source.x - source.width / 2, source.y)
        end = (target.x - target.width / 2, target.y)
        return [start, (left, start[1]), (left, end[1]), end]
    points = [(source.x, source.y + source.height / 2)]
    points += [(nodes[d].x, nodes[d].y) for d in edge.path]
    points.append((target.x, target.y - target.height / 2))
    curve = [points[0]]
    for a, b in zip(points, points[1:], strict=False):
        middle = (b[1] - a[1]) / 2
        curve += [(a[0], a[1] + middle), (b[0], b[1] - middle), b]
    return curve


def _polyline_as_curves(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    curve = [points[0]]
    for a, b in zip(points, points[1:], strict=False):
        curve += [a, b, b]
    return curve


def bezier_points(curve: list[tuple[float, float]], steps: int = 16) -> list[tuple[float, float]]:
    """Sample the cubic segments (for Pillow, which draws no curves)."""
    sampled = [curve[0]]
    for i in range(0, len(curve) - 1, 3):
        p0, c1, c2, p1 = curve[i:i + 4]
        for step in range(1, steps + 1):
            t = step / steps
            sampled.append(tuple(  # type: ignore[arg-type]
                (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t ** 2 * c + t ** 3 * d
                for a, b, c, d in zip(p0, c1, c2, p1, strict=True)))
    return sampled


def node_colors(node: Node, statuses: dict[str, str] | None) -> tuple[str, str]:
    if statuses is not None and node.kind not in ("start", "end"):
        return STATUS_COLORS[statuses.get(node.name, "not_run")]
    return TYPE_COLORS.get(node.kind, ("#ffffff", "#495057"))


def node_outline(node: Node) -> list[tuple[float, float]] | None:
    """Polygon for Choice (pointed ends); None for the rounded rectangles."""
    if node.kind != "Choice":
        return None
    left, right = node.x - node.width / 2, node.x + node.width / 2
    top, bottom = node.y - NODE_H / 2, node.y + NODE_H / 2
    tip = 12
    return [(left, node.y), (left + tip, top), (right - tip, top), (right, node.y),
            (right - tip, bottom), (left + tip, bottom)]


# -- SVG -----------------------------------------------------------------------------------
def to_svg(definition: dict, statuses: dict[str, str] | None = None, title: str = "") -> str:
    lay = layout(definition)
    lay.width = max(lay.width, _legend_width(statuses) + 2 * MARGIN)
    legend_h = 28
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" '
        f'height="{lay.height + legend_h:.0f}" viewBox="0 0 {lay.width:.0f} {lay.height + legend_h:.0f}" '
        f'font-family="{FONT}" class="stepml-graph">',
        f"<title>{html.escape(title or definition.get('Comment', 'state machine'))}</title>",
        "<defs>" + "".join(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/>'
            f"</marker>" for name, color in (("next", EDGE_COLOR), ("catch", CATCH_COLOR),
                                                ("loop", LOOP_COLOR))) + "</defs>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<g class="edges">', *(_svg_edge(lay, e, i) for i, e in enumerate(lay.edges)),
        *_svg_bus_labels(lay), "</g>",
        '<g class="states">', *(_svg_node(n, statuses) for n in lay.nodes.values() if n.kind != "dummy"),
        "</g>", _svg_legend(lay, statuses), "</svg>",
    ]
    return "\n".join(parts)


def _edge_style(edge: Edge) -> tuple[str, str, str]:
    if edge.kind == "catch":
        return CATCH_COLOR, "catch", ' stroke-dasharray="5 4"'
    if edge.back:
        return LOOP_COLOR, "loop", ""
    return EDGE_COLOR, "next", ""


def _svg_edge(lay: Layout, edge: Edge, index: int) -> str:
    curve = edge_geometry(lay, edge, index)
    d = f"M{curve[0][0]:.1f},{curve[0][1]:.1f} " + " ".join(
        f"C{a[0]:.1f},{a[1]:.1f} {b[0]:.1f},{b[1]:.1f} {c[0]:.1f},{c[1]:.1f}"
        for a, b, c in zip(curve[1::3], curve[2::3], curve[3::3], strict=False))
    color, marker, dash = _edge_style(edge)
    tooltip = f"{edge.source} → {edge.target}" + (f" [{edge.label}]" if edge.label else "")
    out = (f'<path class="edge edge-{edge.kind}{" edge-loop" if edge.back else ""}" '
           f'data-source="{html.escape(edge.source)}" data-target="{html.escape(edge.target)}" d="{d}" '
           f'fill="none" stroke="{color}" stroke-width="1.5"{dash} marker-end="url(#arrow-{marker})">'
           f"<title>{html.escape(tooltip)}</title></path>")
    if edge.kind in ("choice", "default") and edge.label:
        x, y = _label_anchor(curve)
        width = CHAR_W * 0.85 * len(edge.label) + 8
        out += (f'<g class="edge-label"><rect x="{x - width / 2:.1f}" y="{y - 8:.1f}" width="{width:.1f}" '
                f'height="16" rx="3" fill="#ffffff" fill-opacity="0.92"/><text x="{x:.1f}" y="{y + 4:.1f}" '
                f'font-size="10.5" text-anchor="middle" fill="#5c5f66">{html.escape(edge.label)}</text></g>')
    return out


def _label_anchor(curve: list[tuple[float, float]]) -> tuple[float, float]:
    """Two thirds along the first segment: fanned-out Choice edges are apart there."""
    sampled = bezier_points(curve[:4], 12)
    return sampled[8]


def _svg_bus_labels(lay: Layout) -> list[str]:
    return [f'<text x="{x - 4:.1f}" y="{lay.nodes[target].y - 6:.1f}" font-size="10.5" '
            f'text-anchor="end" fill="{CATCH_COLOR}">catch</text>' for target, x in lay.catch_bus.items()]


def _svg_node(node: Node, statuses: dict[str, str] | None) -> str:
    if node.kind in ("start", "end"):
        label = "Start" if node.kind == "start" else "End"
        return (f'<g class="terminal" data-state="{node.name}"><circle cx="{node.x:.1f}" cy="{node.y:.1f}" '
                f'r="9" fill="#343a40"/><text x="{node.x + 15:.1f}" y="{node.y + 4:.1f}" font-size="11" '
                f'fill="#343a40">{label}</text></g>')
    fill, stroke = node_colors(node, statuses)
    status = (statuses or {}).get(node.name, "not_run") if statuses is not None else "idle"
    left, top = node.x - node.width / 2, node.y - NODE_H / 2
    outline = node_outline(node)
    stroke_width = 2.2 if status in ("failed", "running") else 1.4
    common = f'fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"'
    shape = (f'<polygon class="shape" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in outline)}" {common}/>'
             if outline else
             f'<rect class="shape" x="{left:.1f}" y="{top:.1f}" width="{node.width:.1f}" height="{NODE_H}" '
             f'rx="{6 if node.kind == "Task" else 14}" {common}/>')
    faded = ' opacity="0.6"' if status == "not_run" else ""
    name = html.escape(node.name)
    return (f'<g class="state status-{status}" data-state="{name}" data-type="{node.kind}" '
            f'data-status="{status}"{faded}><title>{name} ({node.kind}) — {status.replace("_", " ")}'
            f"</title>{shape}"
            f'<text x="{node.x:.1f}" y="{node.y - 1:.1f}" font-size="12.5" text-anchor="middle" '
            f'fill="#212529">{name}</text>'
            f'<text x="{node.x:.1f}" y="{node.y + 13:.1f}" font-size="9.5" text-anchor="middle" '
            f'fill="#868e96">{node.kind}</text></g>')


def _legend_entries(statuses: dict[str, str] | None) -> list[tuple[str, tuple[str, str]]]:
    if statuses is None:
        return [(kind, colors) for kind, colors in TYPE_COLORS.items() if kind not in ("Pass", "Map")]
    return [(status.replace("_", " "), colors) for status, colors in STATUS_COLORS.items()]


def _legend_width(statuses: dict[str, str] | None) -> float:
    return sum(30 + CHAR_W * 0.8 * len(label) for label, _ in _legend_entries(statuses)) + 140


def _svg_legend(lay: Layout, statuses: dict[str, str] | None) -> str:
    x, y, out = MARGIN, lay.height + 6, ['<g class="legend">']
    for label, (fill, stroke) in _legend_entries(statuses):
        out.append(f'<rect x="{x}" y="{y}" width="14" height="12" rx="2" fill="{fill}" stroke="{stroke}"/>'
                   f'<text x="{x + 18}" y="{y + 10}" font-size="10.5" fill="#495057">{label}</text>')
        x += 30 + CHAR_W * 0.8 * len(label)
    out.append(f'<line x1="{x}" y1="{y + 6}" x2="{x + 22}" y2="{y + 6}" stroke="{CATCH_COLOR}" '
               f'stroke-dasharray="5 4"/><text x="{x + 26}" y="{y + 10}" font-size="10.5" '
               f'fill="#495057">catch</text>')
    x += 70
    out.append(f'<line x1="{x}" y1="{y + 6}" x2="{x + 22}" y2="{y + 6}" stroke="{LOOP_COLOR}"/>'
               f'<text x="{x + 26}" y="{y + 10}" font-size="10.5" fill="#495057">loop</text></g>')
    return "".join(out)


# -- PNG and HTML --------------------------------------------------------------------------
def to_png(definition: dict, statuses: dict[str, str] | None = None, scale: float = 2.0) -> bytes:
    """The same drawing rasterised with Pillow (no browser or graphviz needed)."""
    from PIL import Image, ImageDraw, ImageFont

    lay = layout(definition)
    size = (math.ceil(lay.width * scale), math.ceil((lay.height + 10) * scale))
    image = Image.new("RGB", size, "#ffffff")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12.5 * scale)
    small = ImageFont.load_default(size=9.5 * scale)
    for index, edge in enumerate(lay.edges):
        _png_edge(draw, lay, edge, index, scale)
    for node in lay.nodes.values():
        if node.kind != "dummy":
            _png_node(draw, node, statuses, scale, font, small)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_edge(draw: Any, lay: Layout, edge: Edge, index: int, scale: float) -> None:
    color, _, dash = _edge_style(edge)
    points = [(x * scale, y * scale) for x, y in bezier_points(edge_geometry(lay, edge, index))]
    for number, (a, b) in enumerate(zip(points, points[1:], strict=False)):
        if not dash or number % 2 == 0:
            draw.line([a, b], fill=color, width=max(1, int(1.5 * scale)))
    (x0, y0), (x1, y1) = points[-2], points[-1]
    angle, length = math.atan2(y1 - y0, x1 - x0), 7 * scale
    draw.polygon([(x1, y1),
                  (x1 - length * math.cos(angle - 0.4), y1 - length * math.sin(angle - 0.4)),
                  (x1 - length * math.cos(angle + 0.4), y1 - length * math.sin(angle + 0.4))], fill=color)


def _png_node(draw: Any, node: Node, statuses: dict[str, str] | None, scale: float,
              font: Any, small: Any) -> None:
    x, y = node.x * scale, node.y * scale
    if node.kind in ("start", "end"):
        radius = 9 * scale
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill="#343a40")
        draw.text((x + 15 * scale, y), "Start" if node.kind == "start" else "End", fill="#343a40",
                  font=small, anchor="lm")
        return
    fill, stroke = node_colors(node, statuses)
    outline = node_outline(node)
    if outline:
        draw.polygon([(px * scale, py * scale) for px, py in outline], fill=fill, outline=stroke,
                     width=max(1, int(1.4 * scale)))
    else:
        box = [x - node.width / 2 * scale, y - NODE_H / 2 * scale,
               x + node.width / 2 * scale, y + NODE_H / 2 * scale]
        draw.rounded_rectangle(box, radius=(6 if node.kind == "Task" else 14) * scale, fill=fill,
                               outline=stroke, width=max(1, int(1.4 * scale)))
    draw.text((x, y - 5 * scale), node.name, fill="#212529", font=font, anchor="mm")
    draw.text((x, y + 10 * scale), node.kind, fill="#868e96", font=small, anchor="mm")


def to_html(definition: dict, statuses: dict[str, str] | None = None, title: str = "",
            rows: list[dict[str, str]] | None = None) -> str:
    """A standalone page: the SVG plus, for an execution, a table of its states."""
    table = ""
    if rows:
        head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
                       for row in rows)
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:{FONT};margin:24px;color:#212529}}table{{border-collapse:collapse;"
            f"margin-top:16px}}td,th{{border:1px solid #dee2e6;padding:4px 8px;font-size:13px;"
            f"text-align:left}}</style></head><body><h2>{html.escape(title)}</h2>"
            f"{to_svg(definition, statuses, title)}{table}</body></html>")
