"""Keyboard shortcuts (a keydown listener that clicks the app's buttons), their help text, and CSS."""

from __future__ import annotations

import json

SHORTCUTS = (
    (("d", "ArrowRight"), "next frame", "hm-next"),
    (("a", "ArrowLeft"), "previous frame", "hm-prev"),
    (("y",), "accept frame", "hm-accept"),
    (("x",), "reject frame", "hm-reject"),
    (("t",), "toggle positive / negative click", "hm-toggle"),
    (("z", "Ctrl+z"), "undo", "hm-undo"),
    (("Shift+z", "Ctrl+y", "Ctrl+Shift+z"), "redo", "hm-redo"),
    (("f",), "next flagged frame", "hm-next-flagged"),
    (("c",), "clear clicks on this frame", "hm-clear"),
    (("g",), "toggle Add to mask (another person)", "hm-add"),
)
"""(key combinations, action, id of the button, or checkbox, clicked). A combination is
``[Ctrl+][Shift+]KEY``: ``KEY`` a lower-case letter (Caps Lock does not matter) or a ``KeyboardEvent.key``
name such as ``ArrowRight``."""

_NAMES = {"ArrowRight": "→", "ArrowLeft": "←"}


def key_label(combo: str) -> str:
    """How the help table writes a combination: ``Ctrl+Shift+z`` -> ``Ctrl+Shift+Z``, ``z`` -> ``z``,
    ``ArrowRight`` -> ``→``."""
    *mods, key = combo.split("+")
    key = _NAMES.get(key, key.upper() if mods else key)
    return "+".join([*mods, key])


def shortcuts_markdown() -> str:
    """The shortcut table shown in the app (and in docs/annotator.md)."""
    rows = "\n".join(f"| {' / '.join(f'`{key_label(k)}`' for k in keys)} | {action} |" for keys, action, _ in SHORTCUTS)
    return "| key | action |\n|---|---|\n" + rows


def key_map() -> dict[str, str]:
    """``{combination: element id}`` over :data:`SHORTCUTS` (what the page's listener looks up)."""
    return {combo: target for keys, _, target in SHORTCUTS for combo in keys}


def shortcuts_head() -> str:
    """A ``<script>`` for ``launch(head=...)``: keys typed outside a text field click the buttons (and
    the checkbox). Checkboxes, radio buttons and sliders keep no keys: after the mouse used one
    (Add to mask, the click mode, the frame slider) the shortcuts still work."""
    return (
        """<script>
(() => {
  const KEYS = """
        + json.dumps(key_map())
        + """;
  const TEXT = new Set(["text", "password", "number", "search", "email", "url", "tel", "date", "time"]);
  const press = (id) => {
    const el = document.getElementById(id);
    if (!el) return false;
    const btn = el.tagName === "BUTTON" ? el : el.querySelector("button, input[type=checkbox]");
    if (btn) { btn.click(); return true; }
    return false;
  };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    if (t && t.tagName === "INPUT" && TEXT.has((t.type || "text").toLowerCase())) return;
    if (e.altKey || e.metaKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const id = KEYS[(e.ctrlKey ? "Ctrl+" : "") + (e.shiftKey ? "Shift+" : "") + key];
    if (id && press(id)) e.preventDefault();
  });
})();
</script>"""
    )


CSS = """
#hm-frame img { cursor: crosshair; }
#hm-filmstrip img, #hm-strip img { cursor: pointer; }
#hm-message { min-height: 1.5em; }
"""
