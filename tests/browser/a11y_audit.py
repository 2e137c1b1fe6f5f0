"""An accessibility audit of a page as Chromium renders it (WCAG 2.1 AA), with no axe-core.

The page reports what it draws (computed colours, boxes, headings, ids, focus styles) and
Chromium's own accessibility tree names each control; the judging happens here, in Python,
so a finding names the rule, the element and the measured figure.

- Contrast: https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio with the relative luminance of
  https://www.w3.org/TR/WCAG21/#dfn-relative-luminance (the 0.04045 threshold of the current
  text). Text 4.5:1, large text 3:1 (1.4.3); input boundaries, icon glyphs, state indicators
  and focus rings 3:1 (1.4.11). Backgrounds are composited the way the browser paints them:
  each ancestor's background and opacity group, down to the canvas.
- A text button needs no boundary: its text identifies it ("Understanding 1.4.11", section
  "User Interface Components": https://www.w3.org/WAI/WCAG21/Understanding/non-text-contrast.html).
- Native checkboxes are painted by Chromium itself (no computed colour to read); their
  unchecked border is Chromium's #767676 (4.5:1 on white) and their checked fill the
  accent colour, which is checked as the brand colour elsewhere.
- Disabled controls are exempt ("part of an inactive user interface component", 1.4.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Rgba = tuple[float, float, float, float]

TEXT_AA = 4.5
LARGE_TEXT_AA = 3.0
NON_TEXT_AA = 3.0

_RGB = re.compile(r"rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)")


def parse_color(text: str) -> Rgba:
    """A computed CSS colour (``rgb(...)``/``rgba(...)``, all Chromium returns here)."""
    match = _RGB.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a computed rgb() colour: {text!r}")
    r, g, b, a = match.groups()
    alpha = 1.0 if a is None else float(a[:-1]) / 100 if a.endswith("%") else float(a)
    return float(r), float(g), float(b), alpha


def relative_luminance(color: Rgba) -> float:
    """https://www.w3.org/TR/WCAG21/#dfn-relative-luminance, of an opaque sRGB colour."""

    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b, _ = color
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(first: Rgba, second: Rgba) -> float:
    """https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio: (L1 + 0.05) / (L2 + 0.05)."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def over(top: Rgba, bottom: Rgba) -> Rgba:
    """Source-over compositing of two non-premultiplied colours (may stay translucent)."""
    ta, ba = top[3], bottom[3]
    alpha = ta + ba * (1 - ta)
    if alpha == 0:
        return 0.0, 0.0, 0.0, 0.0
    mix = [(top[i] * ta + bottom[i] * ba * (1 - ta)) / alpha for i in range(3)]
    return mix[0], mix[1], mix[2], alpha


def painted(top: Rgba | None, stack: list[dict[str, Any]], canvas: Rgba) -> Rgba:
    """The opaque colour on screen where `top` (or nothing) is drawn inside `stack`.

    `stack` runs from the element out to the root, each entry its background and its
    opacity; an element's opacity fades everything it and its descendants painted, so the
    layers are composited inside out, each group faded, then laid on the canvas."""
    group: Rgba = top if top is not None else (0.0, 0.0, 0.0, 0.0)
    for layer in stack:
        group = over(group, parse_color(layer["bg"]))
        group = (group[0], group[1], group[2], group[3] * layer["opacity"])
    return over(group, canvas)


def is_large_text(font_size_px: float, font_weight: int) -> bool:
    """WCAG "large scale": at least 18pt (24px), or 14pt (18.66px) bold."""
    return font_size_px >= 24 or (font_size_px >= 18.66 and font_weight >= 700)


# ---------------------------------------------------------------------------------------
# What the page reports about itself.

_PAGE_HELPERS = r"""
const visible = (node) => {
  if (!node.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
  const box = node.getBoundingClientRect();
  if (box.width <= 1 || box.height <= 1) return false;  // .visually-hidden is 1 x 1 px
  const doc = document.documentElement;
  return box.bottom > -window.scrollY && box.right > -window.scrollX
    && box.left < doc.scrollWidth && box.top < doc.scrollHeight;
};
const describe = (node) => {
  if (!node || node.nodeType !== 1) return String(node);
  let text = node.tagName.toLowerCase();
  if (node.id) text += `#${node.id}`;
  const cls = [...node.classList].join(".");
  if (cls) text += `.${cls}`;
  const words = (node.getAttribute("aria-label") || node.textContent || node.value || "")
    .trim().replace(/\s+/g, " ").slice(0, 40);
  return words ? `${text} "${words}"` : text;
};
const stackOf = (node) => {
  const stack = [];
  for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
    const style = getComputedStyle(n);
    stack.push({
      bg: style.backgroundColor,
      opacity: parseFloat(style.opacity),
      image: style.backgroundImage !== "none",
    });
  }
  return stack;
};
const canvasColor = () => {
  // The canvas under a page without an opaque root background: Canvas in its colour scheme.
  const probe = document.createElement("div");
  probe.style.backgroundColor = "Canvas";
  document.documentElement.append(probe);
  const color = getComputedStyle(probe).backgroundColor;
  probe.remove();
  return color;
};
const forced = () => matchMedia("(forced-colors: active)").matches;
const inkOf = (style) => (forced() ? style.color : style.webkitTextFillColor || style.color);
const disabled = (node) => Boolean(node.closest(":disabled, [aria-disabled='true']"));
const FIELDS = "input:not([type=checkbox]):not([type=radio]):not([type=hidden]), select, textarea";
"""

COLLECT_JS = (
    "() => {"
    + _PAGE_HELPERS
    + r"""
  const texts = [];
  const all = [...document.body.querySelectorAll("*")];
  for (const node of all) {
    if (["SCRIPT", "STYLE", "TEMPLATE", "OPTION", "svg"].includes(node.tagName)) continue;
    const ownText = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    const field = node.matches(FIELDS) && (node.value || node.tagName === "SELECT");
    if (!ownText && !field) continue;
    if (!visible(node) || disabled(node)) continue;
    const style = getComputedStyle(node);
    texts.push({
      what: describe(node), ink: inkOf(style), stack: stackOf(node),
      size: parseFloat(style.fontSize), weight: parseInt(style.fontWeight, 10),
    });
  }
  const boundaries = [];
  for (const node of document.querySelectorAll(FIELDS)) {
    if (!visible(node) || disabled(node)) continue;
    const style = getComputedStyle(node);
    const sides = ["Top", "Right", "Bottom", "Left"]
      .filter((side) => parseFloat(style[`border${side}Width`]) > 0
        && style[`border${side}Style`] !== "none")
      .map((side) => style[`border${side}Color`]);
    boundaries.push({
      what: describe(node), sides, stack: stackOf(node), outside: stackOf(node.parentElement),
    });
  }
  const glyphs = [];
  for (const button of document.querySelectorAll("button, [role=button], a")) {
    if (!visible(button) || disabled(button) || button.textContent.trim()) continue;
    for (const shape of button.querySelectorAll("svg path, svg rect, svg circle, svg polygon")) {
      const style = getComputedStyle(shape);
      const paint = style.fill !== "none" ? style.fill : style.stroke;
      glyphs.push({ what: describe(button), ink: paint, stack: stackOf(button) });
    }
  }
  const indicators = [];
  for (const tab of document.querySelectorAll("[role=tab][aria-selected=true]")) {
    if (!visible(tab)) continue;
    const mark = getComputedStyle(tab, "::after");
    if (mark.content === "none" || mark.content === "normal") continue;
    indicators.push({
      what: `${describe(tab)} selected-tab mark`, ink: mark.backgroundColor, stack: stackOf(tab),
    });
  }
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6, [role=heading]")]
    .filter((h) => h.checkVisibility())
    .map((h) => ({
      what: describe(h),
      level: h.getAttribute("aria-level") ? parseInt(h.getAttribute("aria-level"), 10)
        : parseInt(h.tagName.slice(1), 10) || 2,
    }));
  const ids = {};
  for (const node of document.querySelectorAll("[id]")) ids[node.id] = (ids[node.id] || 0) + 1;
  const doc = document.documentElement;
  // The elements whose right edge is the page's: those widen it (others are scrolled inside).
  const overflowing = doc.scrollWidth > window.innerWidth
    ? all.map((n) => [n, n.getBoundingClientRect().right + window.scrollX])
        .filter(([, right]) => Math.abs(right - doc.scrollWidth) < 1.5)
        .slice(0, 8).map(([n, right]) => `${describe(n)} ends at ${Math.round(right)}px`)
    : [];
  return {
    canvas: canvasColor(),
    forced: forced(),
    texts, boundaries, glyphs, indicators, headings,
    duplicateIds: Object.entries(ids).filter(([, count]) => count > 1).map(([id]) => id),
    imagesWithoutAlt: [...document.querySelectorAll("img:not([alt])")].map(describe),
    mains: [...document.querySelectorAll("main, [role=main]")]
      .filter((m) => m.checkVisibility()).length,
    lang: doc.getAttribute("lang") || "",
    title: document.title.trim(),
    scrollWidth: doc.scrollWidth,
    width: window.innerWidth,
    overflowing,
  };
}"""
)

# Chromium's accessibility tree: the roles a person operates, each of which needs a name.
NAMED_ROLES = {
    "button",
    "link",
    "textbox",
    "searchbox",
    "combobox",
    "listbox",
    "checkbox",
    "radio",
    "switch",
    "slider",
    "spinbutton",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "tab",
    "dialog",
    "alertdialog",
    "img",
    "image",
    "menu",
    "tablist",
    "tabpanel",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    what: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.what}: {self.detail}"


def _contrast_findings(report: dict[str, Any]) -> list[Finding]:
    canvas = parse_color(report["canvas"])
    findings = []
    for text in report["texts"]:
        if any(layer["image"] for layer in text["stack"]):
            findings.append(Finding("1.4.3 contrast", text["what"], "text over a background image"))
            continue
        ink = painted(parse_color(text["ink"]), text["stack"], canvas)
        ground = painted(None, text["stack"], canvas)
        ratio = contrast_ratio(ink, ground)
        need = LARGE_TEXT_AA if is_large_text(text["size"], text["weight"]) else TEXT_AA
        if ratio < need:
            findings.append(
                Finding(
                    "1.4.3 contrast",
                    text["what"],
                    f"{ratio:.2f}:1 < {need}:1 ({text['ink']} on {_hex(ground)}, "
                    f"{text['size']:g}px/{text['weight']})",
                )
            )
    for box in report["boundaries"]:
        outside = painted(None, box["outside"], canvas)
        inside = painted(None, box["stack"], canvas)
        ratios = [contrast_ratio(inside, outside)]
        ratios += [
            contrast_ratio(over(parse_color(side), outside), outside) for side in box["sides"]
        ]
        if max(ratios) < NON_TEXT_AA:
            findings.append(
                Finding(
                    "1.4.11 non-text contrast",
                    box["what"],
                    f"no border or fill reaches {NON_TEXT_AA}:1 against {_hex(outside)} "
                    f"(best {max(ratios):.2f}:1)",
                )
            )
    for mark in report["glyphs"] + report["indicators"]:
        ground = painted(None, mark["stack"], canvas)
        ink = painted(parse_color(mark["ink"]), mark["stack"], canvas)
        ratio = contrast_ratio(ink, ground)
        if ratio < NON_TEXT_AA:
            findings.append(
                Finding(
                    "1.4.11 non-text contrast",
                    mark["what"],
                    f"{ratio:.2f}:1 < {NON_TEXT_AA}:1 ({mark['ink']} on {_hex(ground)})",
                )
            )
    return findings


def _structure_findings(report: dict[str, Any]) -> list[Finding]:
    findings = []
    if not report["lang"]:
        findings.append(Finding("3.1.1 language", "html", "no lang attribute"))
    if not report["title"]:
        findings.append(Finding("2.4.2 page titled", "title", "empty or missing"))
    if report["mains"] != 1:
        findings.append(Finding("1.3.1 landmarks", "main", f"{report['mains']} main landmarks"))
    for dup in report["duplicateIds"]:
        findings.append(Finding("4.1.1 unique ids", f"#{dup}", "used more than once"))
    for img in report["imagesWithoutAlt"]:
        findings.append(Finding("1.1.1 text alternative", img, "img without alt"))
    previous = 0
    for heading in report["headings"]:
        level = heading["level"]
        if previous == 0 and level != 1:
            findings.append(
                Finding("1.3.1 headings", heading["what"], f"first heading is h{level}")
            )
        elif level > previous + 1:
            findings.append(
                Finding("1.3.1 headings", heading["what"], f"h{previous} is followed by h{level}")
            )
        previous = level
    if report["scrollWidth"] > report["width"]:
        findings.append(
            Finding(
                "1.4.10 reflow",
                f"page {report['scrollWidth']}px wide at {report['width']}px",
                "; ".join(report["overflowing"]) or "something overflows",
            )
        )
    return findings


def _name_findings(page: Any) -> list[Finding]:
    """Every operable node in Chromium's accessibility tree has a computed name."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
        findings = []
        for node in nodes:
            role = (node.get("role") or {}).get("value")
            if node.get("ignored") or role not in NAMED_ROLES:
                continue
            if (node.get("name") or {}).get("value", "").strip():
                continue
            what = role
            if "backendDOMNodeId" in node:
                described = cdp.send(
                    "DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]}
                )["node"]
                attrs = described.get("attributes", [])
                named = dict(zip(attrs[::2], attrs[1::2], strict=True))
                what = f"{described['localName']}#{named.get('id', '')} ({role})"
            findings.append(Finding("4.1.2 name", what, "no accessible name"))
        return findings
    finally:
        cdp.detach()


def audit(page: Any) -> list[Finding]:
    """Everything the page shows now, against the rules above."""
    report = page.evaluate(COLLECT_JS)
    return _contrast_findings(report) + _structure_findings(report) + _name_findings(page)


def _hex(color: Rgba) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in color[:3])


# ---------------------------------------------------------------------------------------
# Keyboard: focus moves with Tab; each stop must be visible and visibly focused.

FOCUS_STOP_JS = (
    "(previous) => {"
    + _PAGE_HELPERS
    + r"""
  const look = (node) => {
    const s = getComputedStyle(node);
    return {
      outline: s.outlineStyle === "none" || parseFloat(s.outlineWidth) === 0
        ? "none" : `${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}`,
      outlineColor: s.outlineColor, outlineOffset: parseFloat(s.outlineOffset),
      outlineWidth: s.outlineStyle === "none" ? 0 : parseFloat(s.outlineWidth),
      shadow: s.boxShadow,
      border: [s.borderTopColor, s.borderRightColor, s.borderBottomColor, s.borderLeftColor]
        .join(" "),
      background: s.backgroundColor,
    };
  };
  const before = previous === null
    ? null : document.querySelector(`[data-a11y-stop="${previous}"]`);
  const active = document.activeElement;
  if (!active || active === document.body || active === document.documentElement) {
    return { done: true, before: before && before !== active ? look(before) : null };
  }
  const seen = active.dataset.a11yStop;
  if (seen !== undefined) {
    const was = before && before !== active ? look(before) : null;
    return { done: true, repeat: describe(active), before: was };
  }
  const index = document.querySelectorAll("[data-a11y-stop]").length;
  active.dataset.a11yStop = String(index);
  return {
    done: false, index, what: describe(active), visible: visible(active),
    focused: look(active),
    before: before && before !== active ? look(before) : null,
    outside: stackOf(active.parentElement), canvas: canvasColor(),
  };
}"""
)


@dataclass
class FocusStop:
    what: str
    visible: bool
    focused: dict[str, Any]
    outside: list[dict[str, Any]]
    canvas: str
    unfocused: dict[str, Any] | None = None


def tab_through(page: Any, limit: int = 150) -> list[FocusStop]:
    """Press Tab from the top of the page until focus leaves the page or comes round."""
    page.evaluate(
        "() => { document.activeElement?.blur?.();"
        " for (const n of document.querySelectorAll('[data-a11y-stop]'))"
        " delete n.dataset.a11yStop; }"
    )
    stops: list[FocusStop] = []
    previous: int | None = None
    for _ in range(limit):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUS_STOP_JS, previous)
        if stops and stop["before"] is not None:
            stops[-1].unfocused = stop["before"]
        if stop["done"]:
            break
        stops.append(
            FocusStop(
                stop["what"], stop["visible"], stop["focused"], stop["outside"], stop["canvas"]
            )
        )
        previous = stop["index"]
    else:
        raise AssertionError(f"Tab never left the page after {limit} presses: a keyboard trap")
    return stops


def focus_findings(stops: list[FocusStop]) -> list[Finding]:
    """2.4.7 focus visible (and 1.4.11: the indicator at 3:1 against what surrounds it)."""
    findings = []
    for stop in stops:
        if not stop.visible:
            findings.append(Finding("2.4.7 focus visible", stop.what, "focus on a hidden element"))
            continue
        focused, unfocused = stop.focused, stop.unfocused
        changed = unfocused is None or any(
            focused[key] != unfocused[key] for key in ("outline", "shadow", "border", "background")
        )
        if not changed:
            findings.append(
                Finding("2.4.7 focus visible", stop.what, "looks the same focused and unfocused")
            )
            continue
        if focused["outline"] != "none" and focused["outlineWidth"] >= 1:
            if focused["outlineOffset"] >= 0:
                around = painted(None, stop.outside, parse_color(stop.canvas))
                ring = over(parse_color(focused["outlineColor"]), around)
                ratio = contrast_ratio(ring, around)
                if ratio < NON_TEXT_AA:
                    findings.append(
                        Finding(
                            "1.4.11 focus indicator",
                            stop.what,
                            f"outline {ratio:.2f}:1 < {NON_TEXT_AA}:1 against {_hex(around)}",
                        )
                    )
        elif focused["shadow"] == "none":
            findings.append(
                Finding("2.4.7 focus visible", stop.what, "neither outline nor box-shadow on focus")
            )
    return findings
