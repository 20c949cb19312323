"""`image list`: each image's table, partitions and file systems, and about what deleting
it alone would free."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from twofold.cli.app import app

from .conftest import FS_OF_PART, root_only, run

runner = CliRunner()
pytestmark = root_only


def image(*args: str) -> tuple[int, str]:
    got = runner.invoke(app, ["image", *args])
    return got.exit_code, got.output


def test_list_shows_partitions_and_what_deleting_frees(tmp_path: Path, gpt_disk: Path) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    assert image("create", str(gpt_disk), "--to", str(drive), "--name", "one")[0] == 0
    code, text = image("list", str(drive), "--json")
    assert code == 0, text
    [one] = json.loads(text)
    assert one["table"] == "gpt" and one["host"] == socket.gethostname()
    assert [(v["number"], v["fs"], v["name"]) for v in one["volumes"]] == [
        (n, FS_OF_PART[n], name) for n, name in ((1, "EFI"), (2, "root"), (3, "data"))]
    overhead = one["stored_new_bytes"] - one["frees_bytes"]  # pack headers and indexes
    assert one["frees_bytes"] > 0 and 0 <= overhead < 64 << 10
    assert image("create", str(gpt_disk), "--to", str(drive), "--name", "two")[0] == 0
    code, text = image("list", str(drive))
    assert code == 0, text
    assert "disk gpt" in text and "frees" in text
    assert f" {socket.gethostname()} " in text.splitlines()[1]  # the host column
    assert 'partition 2  ext4' in text and 'name "root"' in text and "partition 3  ntfs" in text
    code, text = image("list", str(drive), "--json")
    assert [i["frees_bytes"] for i in json.loads(text)] == [0, 0]  # every chunk is shared



def test_list_shows_the_file_systems_label(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    vol = tmp_path / "vol.img"
    with open(vol, "wb") as f:
        f.truncate(16 << 20)
    run("mkfs.ext4", "-q", "-F", "-L", "HOLIDAYS", "-d", tree, vol)
    drive = tmp_path / "drive"
    drive.mkdir()
    assert image("create", str(vol), "--to", str(drive), "--name", "v")[0] == 0
    code, text = image("list", str(drive))
    assert code == 0 and 'volume       ext4' in text and 'label "HOLIDAYS"' in text, text
    code, text = image("list", str(drive), "--json")
    assert json.loads(text)[0]["volumes"][0]["label"] == "HOLIDAYS"
