"""The library never imports Qt or napari: only the plugin's own modules (``_widget``,
``_worker``, ``_reader``...) may. Checked in a fresh interpreter, after importing every
public module and running the command line's help."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: top-level packages of the GUI stack; any module starting with one of these is a GUI module
GUI_PREFIXES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui",
                "vispy", "superqt")

SCRIPT = textwrap.dedent("""
    import argparse, contextlib, importlib, io, json, sys

    import napari_mrepinn as mp
    from napari_mrepinn import cli

    for name in sorted(mp._SUBMODULES):
        importlib.import_module(f"napari_mrepinn.{name}")
    for name in mp.__all__:
        getattr(mp, name)
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = sorted(sub.choices)
    for argv in [["--help"]] + [[c, "--help"] for c in commands]:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            cli.main(argv)
    with open(sys.argv[1], "w") as f:
        json.dump({"modules": sorted(sys.modules), "commands": commands}, f)
""")


def test_library_and_cli_help_load_no_gui_module(tmp_path):
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())
    assert {"fit", "benchmark"} <= set(found["commands"])  # the help of each was shown
    assert "napari_mrepinn.benchmark" in found["modules"]
    gui = [m for m in found["modules"]
           if m.startswith(GUI_PREFIXES) and not m.startswith("napari_mrepinn")]
    assert gui == [], f"the library imported GUI modules: {gui[:10]}"
