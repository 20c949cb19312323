"""`schedule install|show|remove`: units for several schedules pass `systemd-analyze
verify`, the udev rule matches its drive, and the crontab fallback with the real crontab
in a private mount namespace."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs.conftest import Cli, json_of
from twofold.jobs.config import parse
from twofold.jobs.units import Invocation, merge_crontab, udev_rule

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CONFIG = f"""
[sets.docs]
sources = ["/srv/docs"]
target = "UUID={UUID}"
schedule = "daily"

[sets.pics]
sources = ["/srv/pics"]
target = "LABEL=MY BACKUP"
schedule = "every 3 days"

[sets.music]
sources = ["/srv/music 100%"]
target = "/mnt/nas share"
schedule = "monthly"

[sets.work]
sources = ["/srv/work"]
target = "/mnt/nas"
schedule = "Mon,Thu *-*-* 02:30"

[sets.manual]
sources = ["/srv/other"]
target = "/mnt/nas"

[images.system]
source = "/dev/sda"
target = "UUID={UUID}"
"""
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def verify(folder: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify every unit in `folder` (user units need a runtime dir)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    units = sorted(str(p) for p in folder.iterdir())
    return subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no",
                           *(["--user"] if user else []), *units],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_units_for_several_schedules_verify(cli: Cli, tmp_path: Path) -> None:
    units = tmp_path / "units"
    code, out = cli(CONFIG, "schedule", "install", "--unit-dir", str(units))
    assert code == 0, out
    names = {p.name for p in units.rglob("*") if p.is_file()}
    assert {"twofold-backup-docs.timer", "twofold-backup-work.timer",
            "twofold-status.timer", "twofold-image-system.timer",
            "twofold-drive@.service", "90-twofold.rules"} <= names
    assert "twofold-backup-manual.timer" not in names  # no schedule, no timer
    user, system = units / "user", units / "system"
    assert (user / "twofold-backup-work.timer").read_text().count(
        "OnCalendar=Mon,Thu *-*-* 02:30") == 1
    assert "OnCalendar=daily" in (user / "twofold-backup-pics.timer").read_text()
    # A template is verified through an instance, as udev starts it.
    shutil.copy(system / "twofold-drive@.service", system / f"twofold-drive@{UUID}.service")
    for folder, as_user in ((user, True), (system, False)):
        r = verify(folder, as_user, tmp_path)
        assert r.returncode == 0 and "ignoring" not in r.stderr, r.stderr
    # The check can fail: an impossible time is refused by systemd.
    bad = user / "twofold-backup-docs.timer"
    bad.write_text(bad.read_text().replace("OnCalendar=daily", "OnCalendar=*-*-* 25:00"))
    r = verify(user, True, tmp_path)
    assert r.returncode != 0 and "25:00" in r.stderr

    code, out = cli(CONFIG, "schedule", "show", "--unit-dir", str(units), "--json")
    shown = json_of(out)
    assert code == 0 and len(shown["timers"]) == 6
    assert all(nxt != "?" for _unit, _cal, nxt in shown["timers"] if "docs" not in _unit)
    code, out = cli(CONFIG, "schedule", "remove", "--unit-dir", str(units))
    assert code == 0 and not [p for p in units.rglob("*") if p.is_file()]


def test_exec_lines_quote_spaces_and_percent(cli: Cli, tmp_path: Path) -> None:
    inv = Invocation(["/opt/my python/python3"], "/home/a b/c 50%.toml", "/st")
    from twofold.jobs.units import plan_units

    files = {f.name: f.text for f in plan_units(parse(CONFIG, tmp_path / "c"), inv)}
    line = next(ln for ln in files["twofold-backup-docs.service"].splitlines()
                if ln.startswith("ExecStart="))
    assert line == ('ExecStart="/opt/my python/python3" --config "/home/a b/c 50%%.toml" '
                    "run-due --job docs")
    assert "--drive %i" in files["twofold-drive@.service"]


def udev_matches(rule: str, props: dict[str, str]) -> list[str]:
    """The units a rules text asks systemd to start for a device with `props`."""
    wants: list[str] = []
    for line in rule.splitlines():
        if not line or line.startswith("#"):
            continue
        conds = re.findall(r'(ACTION|SUBSYSTEM|ENV\{(\w+)\})=="([^"]*)"', line)
        if all(any(fnmatch.fnmatchcase(props.get(env or key, ""), alt)
                   for alt in pattern.split("|"))  # udev's alternatives
               for key, env, pattern in conds):
            for unit in re.findall(r'SYSTEMD_WANTS\}\+="([^"]*)"', line):
                wants.append(re.sub(r"\$env\{(\w+)\}", lambda m: props.get(m[1], ""), unit))
            if 'GOTO="twofold_end"' in line:
                break
    return wants


def test_udev_rule_matches_its_drive_only(tmp_path: Path) -> None:
    rule = udev_rule(parse(CONFIG, tmp_path / "c.toml"))
    assert rule is not None
    base = {"ACTION": "add", "SUBSYSTEM": "block"}
    mine = {**base, "ID_FS_UUID": UUID, "ID_FS_LABEL": "OTHER"}
    assert udev_matches(rule, mine) == [f"twofold-drive@{UUID}.service"]
    other = {**base, "ID_FS_UUID": UUID.replace("0a", "ff"), "ID_FS_LABEL": "X"}
    assert udev_matches(rule, other) == []
    labelled = {**base, "ID_FS_UUID": "1234-ABCD", "ID_FS_LABEL": "MY_BACKUP"}
    assert udev_matches(rule, labelled) == ["twofold-drive@1234-ABCD.service"]
    upper = {**base, "ID_FS_UUID": UUID.upper(), "ID_FS_LABEL": "OTHER"}
    assert udev_matches(rule, upper) == [f"twofold-drive@{UUID.upper()}.service"]
    both = {**mine, "ID_FS_LABEL": "MY_BACKUP"}  # one unit start, not two
    assert udev_matches(rule, both) == [f"twofold-drive@{UUID}.service"]
    assert udev_matches(rule, {**mine, "ACTION": "remove"}) == []


def test_merge_crontab_keeps_foreign_lines() -> None:
    old = "MAILTO=me\n0 1 * * * backup-other\n5 3 * * * x run-due --job a # twofold:a\n"
    new = merge_crontab(old, ["7 3 * * * y # twofold:b"])
    assert new == "MAILTO=me\n0 1 * * * backup-other\n7 3 * * * y # twofold:b\n"
    assert merge_crontab("1 1 * * * z # twofold:q\n", []) == ""


CRON_OK = shutil.which("crontab") and shutil.which("unshare") and os.geteuid() == 0


@pytest.mark.skipif(not CRON_OK, reason="needs root, unshare and crontab (apt: cron) to "
                    "use the real crontab in a private mount namespace")
def test_crontab_fallback_with_the_real_crontab(tmp_path: Path) -> None:
    cfg = tmp_path / "my 50%" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(CONFIG)
    tf = f"{sys.executable} -m twofold --config '{cfg}'"
    # A private /var/spool/cron: the machine's own crontabs are never touched.
    script = f"""set -e
        mount -t tmpfs none /var/spool/cron
        mkdir -p -m 1730 /var/spool/cron/crontabs
        echo '0 1 * * * keep-me' | crontab -
        {tf} schedule install --cron
        echo ---; crontab -l; echo ---
        {tf} schedule show
        {tf} schedule remove >/dev/null
        echo ---; crontab -l"""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        script], capture_output=True, text=True, check=False,
                       env={**os.environ, "TWOFOLD_STATE_DIR": str(tmp_path / "st")})
    assert r.returncode == 0, r.stderr
    _, installed, shown, after = r.stdout.split("---\n")
    lines = [ln for ln in installed.splitlines() if "twofold:" in ln]
    assert {ln.rsplit(":", 1)[1] for ln in lines} == {"docs", "pics", "music", "work",
                                                       "system"}
    music = next(ln for ln in lines if ln.endswith("twofold:music"))
    assert re.match(r"\d+ \d \* \* \* TWOFOLD_STATE_DIR=", music), music
    assert "my 50\\%/config.toml' run-due --job music" in music  # cron's % escaped
    assert "keep-me" in installed and "crontab: " in shown
    assert after.strip() == "0 1 * * * keep-me"


def test_the_documented_example_config_parses() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = parse(example, Path("CONFIG.md"))
    assert set(cfg.images) == {"system"} and cfg.sets["nas"].schedule is not None
    assert udev_rule(cfg) is not None


FAT_CONFIG = """
[sets.stick]
sources = ["/tmp"]
target = "UUID={uuid}"
schedule = "daily"
"""


def test_udevadm_runs_the_rule_for_a_fat_drive_whose_uuid_udev_reports_in_upper_case(
        tmp_path: Path) -> None:
    """The rule as written, tried by udev itself on a real FAT32 loop drive (root only)."""
    if os.geteuid() != 0 or not shutil.which("udevadm") or not shutil.which("losetup"):
        pytest.skip("needs root, udevadm (Debian package udev) and loop devices")
    image = tmp_path / "fat.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.vfat", "-F", "32", str(image)], check=True, capture_output=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    rules = Path("/run/udev/rules.d") / f"99-twofold-test-{os.getpid()}.rules"
    rdev = os.stat(dev).st_rdev  # `udevadm test` writes the device's udev database entry:
    db = Path("/run/udev/data") / f"b{os.major(rdev)}:{os.minor(rdev)}"  # put back after,
    kept = db.read_bytes() if db.exists() else None  # or lsblk reads it for the next device
    try:
        uuid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", dev], check=True,
                              capture_output=True, text=True).stdout.strip()
        assert uuid == uuid.upper() and "-" in uuid  # as udev reports it: 7268-578B
        rule = udev_rule(parse(FAT_CONFIG.format(uuid=uuid.lower()), tmp_path / "c.toml"))
        assert rule is not None
        rules.parent.mkdir(parents=True, exist_ok=True)
        rules.write_text(rule)
        got = subprocess.run(["udevadm", "test", "--action=add",
                              f"/sys/class/block/{os.path.basename(dev)}"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert f"SYSTEMD_WANTS=twofold-drive@{uuid}.service" in got.stdout + got.stderr, \
            got.stdout[-2000:] + got.stderr[-2000:]
    finally:
        rules.unlink(missing_ok=True)
        if kept is None:
            db.unlink(missing_ok=True)
        else:
            db.write_bytes(kept)
        subprocess.run(["losetup", "-d", dev], check=False)
