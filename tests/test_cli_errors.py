"""Bad files through the CLI: exit 2, exactly one stderr line naming the file, no traceback."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from spine_models.io.dicom_build import make_dicom, make_identified_cr


def _bad_files(tmp_path):
    make_identified_cr(tmp_path / "good.dcm")
    good = (tmp_path / "good.dcm").read_bytes()
    files = {
        "empty.png": b"",
        "text.png": b"this is a text file\n" * 10,
        "random.dcm": random.Random(0).randbytes(3000),
        "truncated.dcm": good[: len(good) - 400],
        "header_cut.dcm": good[:500],
    }
    ds = make_dicom(np.zeros((64, 64), np.uint16))
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    files["bomb.png"] = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 90000, 90000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return sorted([*files, "nopixels.dcm"])


def test_each_bad_file_exits_2_with_one_line(tmp_path):
    names = _bad_files(tmp_path)
    # one interpreter for all files keeps the test fast; each call goes through the real dispatcher
    script = (
        "import sys, io, contextlib\n"
        "from spine_models.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = main(['info', path])\n"
        "    print(repr((path, code, err.getvalue())))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *[str(tmp_path / n) for n in names]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    results = [eval(line) for line in done.stdout.splitlines()]  # noqa: S307 - our own repr output
    assert len(results) == len(names)
    for path, code, err in results:
        name = path.rsplit("/", 1)[-1]
        assert code == 2, (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err and name in err, (name, err)
        assert len(err) < 300, err


@pytest.mark.parametrize("name", ["empty.png", "bomb.png"])
def test_real_process_exit_code(tmp_path, name):
    _bad_files(tmp_path)
    done = subprocess.run([sys.executable, "-m", "spine_models.cli", "info", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr and name in done.stderr


def test_missing_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "spine_models.cli", "info", str(tmp_path / "nope.png")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
