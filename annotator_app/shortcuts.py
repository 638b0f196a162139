"""Keyboard shortcuts (a keydown listener that clicks the app's buttons), their help text, and CSS."""

from __future__ import annotations

SHORTCUTS = (
    ("d / →", "next frame", "hm-next"),
    ("a / ←", "previous frame", "hm-prev"),
    ("y", "accept frame", "hm-accept"),
    ("x", "reject frame", "hm-reject"),
    ("t", "toggle positive / negative click", "hm-toggle"),
    ("z / Ctrl+Z", "undo", "hm-undo"),
    ("Shift+Z / Ctrl+Y", "redo", "hm-redo"),
    ("f", "next flagged frame", "hm-next-flagged"),
    ("c", "clear clicks on this frame", "hm-clear"),
    ("g", "toggle Add to mask (another person)", "hm-add"),
)
"""(keys, action, id of the button, or checkbox, clicked)."""


def shortcuts_markdown() -> str:
    """The shortcut table shown in the app."""
    rows = "\n".join(f"| `{keys}` | {action} |" for keys, action, _ in SHORTCUTS)
    return "| key | action |\n|---|---|\n" + rows


def shortcuts_head() -> str:
    """A ``<script>`` for ``launch(head=...)``: keys outside text fields click the buttons (and the checkbox)."""
    return """<script>
(() => {
  const press = (id) => {
    const el = document.getElementById(id);
    if (!el) return false;
    const btn = el.tagName === "BUTTON" ? el : el.querySelector("button, input[type=checkbox]");
    if (btn) { btn.click(); return true; }
    return false;
  };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (e.altKey || e.metaKey) return;
    const k = e.key, ctrl = e.ctrlKey;
    let id = null;
    if (ctrl && (k === "z" || k === "Z")) id = e.shiftKey ? "hm-redo" : "hm-undo";
    else if (ctrl && (k === "y" || k === "Y")) id = "hm-redo";
    else if (ctrl) return;
    else if (k === "ArrowRight" || k === "d") id = "hm-next";
    else if (k === "ArrowLeft" || k === "a") id = "hm-prev";
    else if (k === "y") id = "hm-accept";
    else if (k === "x") id = "hm-reject";
    else if (k === "t") id = "hm-toggle";
    else if (k === "z") id = "hm-undo";
    else if (k === "Z") id = "hm-redo";
    else if (k === "f") id = "hm-next-flagged";
    else if (k === "c") id = "hm-clear";
    else if (k === "g") id = "hm-add";
    if (id && press(id)) e.preventDefault();
  });
})();
</script>"""


CSS = """
#hm-frame img { cursor: crosshair; }
#hm-filmstrip img, #hm-strip img { cursor: pointer; }
#hm-message { min-height: 1.5em; }
"""
