"""deploy/: units that systemd accepts, rate 2.0 or lower, hold no secret; and
Settings reading the secrets those units load from $CREDENTIALS_DIRECTORY."""

from __future__ import annotations

import configparser
import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faxd.config import CREDENTIAL_VARIABLES, Settings
from faxd.errors import ConfigError

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICES = sorted(DEPLOY.glob("*.service"))
UNITS = [*SERVICES, DEPLOY / "faxd.target"]
INSTALLED_FAXD = "/opt/faxd/venv/bin/faxd"
MAX_EXPOSURE = 2.0
#: What faxd calls that a unit's SystemCallFilter= must allow: validation's forked
#: child sets rlimits, `faxd worker` sets PR_SET_PDEATHSIG, the watcher uses inotify.
NEEDED_SYSCALLS = (
    "setrlimit", "prlimit64", "prctl", "fork", "clone", "clone3", "execve", "wait4",
    "inotify_init1", "inotify_add_watch", "socket", "connect", "sendmsg", "bind",
    "listen", "accept4", "epoll_wait", "pipe2", "kill",
)  # fmt: skip
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt: systemd)"
)


def _service_section(unit: Path) -> dict[str, list[str]]:
    """Each key of [Service] with all its values (systemd allows repeated keys)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_units_exist() -> None:
    """deploy/ ships the three services, the target and the environment example."""
    names = {p.name for p in DEPLOY.iterdir()}
    assert {
        "faxd-worker.service", "faxd-watch.service", "faxd-api.service",
        "faxd.target", "faxd.env.example",
    } <= names  # fmt: skip


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_security_exposure_at_most_2(unit: Path) -> None:
    """systemd-analyze security --offline rates every service 2.0 or lower."""
    out = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, out.stdout


@needs_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    """systemd-analyze verify accepts every unit without a complaint.

    verify checks that ExecStart= is executable, and /opt/faxd exists only on an
    installed host: the test verifies copies that point at this checkout's faxd.
    """
    faxd = Path(sys.executable).parent / "faxd"
    assert faxd.exists(), "faxd is not installed in this virtualenv"
    for unit in UNITS:
        text = unit.read_text()
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_FAXD, str(faxd)))
    out = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", *(u.name for u in UNITS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_syscall_filter_allows_what_faxd_calls(unit: Path) -> None:
    """SystemCallFilter= lets through setrlimit, prctl, inotify and the network."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for value in _service_section(unit)["SystemCallFilter"]:
        target = denied if value.startswith("~") else allowed
        for item in value.lstrip("~").split():
            target |= _expand(item)
    missing = [c for c in NEEDED_SYSCALLS if c not in allowed or c in denied]
    assert missing == []


def _expand(item: str) -> set[str]:
    if not item.startswith("@"):
        return {item}
    out = subprocess.run(
        [str(SYSTEMD_ANALYZE), "syscall-filter", "--no-pager", item],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            names |= _expand(word)
    return names


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_service_shape(unit: Path) -> None:
    """Every service: notify, its own user, mixed kill, restart, state, no /tmp."""
    s = _service_section(unit)
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"][0] in {"main", "all"}
    assert s["User"] == ["faxd"]
    assert s["KillMode"] == ["mixed"]
    assert s["Restart"] == ["on-failure"]
    assert s["StateDirectory"] == ["faxd"]
    assert s["ExecStart"][0].startswith(INSTALLED_FAXD + " ")
    assert "/tmp" not in unit.read_text()
    for cred in s.get("LoadCredential", []):
        name = cred.split(":", 1)[0]
        assert name.upper() in CREDENTIAL_VARIABLES, name


def test_worker_outlasts_dramatiq_shutdown() -> None:
    """TimeoutStopSec leaves dramatiq its shutdown timeout plus the wrapper's 5 s."""
    s = _service_section(DEPLOY / "faxd-worker.service")
    shutdown = re.search(r"--shutdown-timeout (\d+)", s["ExecStart"][0])
    assert shutdown
    assert int(s["TimeoutStopSec"][0]) > int(shutdown.group(1)) + 5
    assert s["NotifyAccess"] == ["all"]  # READY=1 comes from the dramatiq processes


SECRET_SHAPES = {
    "uuid": re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.I),
    "token id": re.compile(r"token-(?!XXXXXX)[A-Za-z0-9]{6}"),
    "password in a URL": re.compile(r"://[^/\s:@]*:[^/\s@]+@"),
    # hex, base64 or url-safe keys: 24+ such characters with a digit among them
    "long random string": re.compile(r"\b(?=[\w+-]*\d)[\w+-]{24,}"),
    "secret variable with a value": re.compile(
        r"^\s*(SIPGATE_TOKEN|FAXD_API_TOKENS|FAXD_CALLBACK_SECRET)\s*=\s*\S", re.M
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "path", [*UNITS, DEPLOY / "faxd.env.example"], ids=lambda p: p.name
)
def test_nothing_secret_looking(path: Path) -> None:
    """No unit or example holds a token, a UUID, a URL password or a long key."""
    text = path.read_text()
    found = {what for what, shape in SECRET_SHAPES.items() if shape.search(text)}
    assert found == set()


def test_env_example_parses_and_loads(tmp_path: Path) -> None:
    """The example plus the credentials the units load gives valid Settings."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[env]\n" + (DEPLOY / "faxd.env.example").read_text())
    env = dict(parser["env"])
    assert "SIPGATE_TOKEN" not in env
    (tmp_path / "sipgate_token").write_text(TOKEN + "\n")
    settings = Settings.from_env({**env, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.log_format == "json"
    assert settings.sipgate_token.reveal() == TOKEN


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_MDWE is Linux")
def test_python_runs_with_memory_deny_write_execute() -> None:
    """faxd imports and validates (fork + setrlimit) with W^X enforced.

    PR_SET_MDWE (Linux 6.3) is the kernel's form of MemoryDenyWriteExecute=, which
    systemd uses where it exists; the setting survives execve.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_get_mdwe = 66
    if libc.prctl(pr_get_mdwe, 0, 0, 0, 0) < 0:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    child = (
        "import ctypes, mmap\n"
        "assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1\n"
        "import faxd.api, faxd.validation, watch_inbox, magic, pypdf, uvicorn\n"
        "from faxd.config import Settings\n"
        "from faxd.demo import text_pdf\n"
        "pdf = text_pdf('a', 'b')\n"
        "doc = faxd.validation.validate_pdf(pdf, Settings.from_env({}))\n"
        "assert doc.pages == 1\n"
        "try:\n"
        "    wx = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC\n"
        "    mmap.mmap(-1, 4096, prot=wx)\n"
        "except PermissionError:\n"
        "    print('wx refused')\n"
    )
    launcher = (
        "import ctypes, os, sys\n"
        "pr_set_mdwe, refuse_exec_gain = 65, 1\n"
        "assert ctypes.CDLL(None).prctl(pr_set_mdwe, refuse_exec_gain, 0, 0, 0) == 0\n"
        "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher, child],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "wx refused"


# -- $CREDENTIALS_DIRECTORY (LoadCredential=) ---------------------------------

TOKEN = "0f2e6f7c-1d3a-4b7e-9c2d-5a6b7c8d9e0f"
OTHER = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"


def test_credentials_directory_files_are_read(tmp_path: Path) -> None:
    """Lower-case files fill the variables; the trailing newline is dropped."""
    (tmp_path / "sipgate_token").write_text(TOKEN + "\n")
    (tmp_path / "sipgate_token_id").write_text("token-ABC123\n")
    (tmp_path / "faxd_api_tokens").write_text("alpha-token,beta-token\n")
    (tmp_path / "faxd_callback_secret").write_text("s3cret\r\n")
    (tmp_path / "redis_url").write_text("redis://:pw@redis.example:6379/1\n")
    s = Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert s.sipgate_token.reveal() == TOKEN
    assert s.sipgate_token_id == "token-ABC123"
    assert [t.reveal() for t in s.api_tokens] == ["alpha-token", "beta-token"]
    assert s.callback_secret.reveal() == "s3cret"
    assert s.redis_url == "redis://:pw@redis.example:6379/1"


def test_exact_name_files_are_read_too(tmp_path: Path) -> None:
    """A file named exactly like the variable works as well."""
    (tmp_path / "SIPGATE_TOKEN").write_text(TOKEN)
    s = Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert s.sipgate_token.reveal() == TOKEN


def test_credential_file_wins_over_the_variable(tmp_path: Path) -> None:
    """With both, the credential is used: the unit asked for it explicitly."""
    (tmp_path / "sipgate_token").write_text(OTHER + "\n")
    s = Settings.from_env(
        {"CREDENTIALS_DIRECTORY": str(tmp_path), "SIPGATE_TOKEN": TOKEN}
    )
    assert s.sipgate_token.reveal() == OTHER


def test_blank_or_missing_credential_leaves_the_variable(tmp_path: Path) -> None:
    """A blank credential file counts as absent; the variable then applies."""
    (tmp_path / "sipgate_token").write_text("\n")
    s = Settings.from_env(
        {"CREDENTIALS_DIRECTORY": str(tmp_path), "SIPGATE_TOKEN": TOKEN}
    )
    assert s.sipgate_token.reveal() == TOKEN
    assert Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)}).sandbox_wanted


def test_only_the_passed_mapping_names_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CREDENTIALS_DIRECTORY comes from the mapping passed in, not os.environ."""
    (tmp_path / "sipgate_token").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Settings.from_env({}).sandbox_wanted
    assert not Settings.from_env().sandbox_wanted  # the process environment


def test_other_files_are_not_settings(tmp_path: Path) -> None:
    """Only the secret variables are read from the directory."""
    (tmp_path / "faxd_max_pages").write_text("3")
    assert Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)}).max_pages == 200


def test_unreadable_credential_is_a_config_error(tmp_path: Path) -> None:
    """A credential that cannot be read names the file, never a value."""
    (tmp_path / "sipgate_token").mkdir()  # reading a directory fails for root too
    with pytest.raises(ConfigError, match="sipgate_token") as info:
        Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert str(tmp_path) not in info.value.message


def test_binary_credential_is_a_config_error(tmp_path: Path) -> None:
    """Non-UTF-8 bytes are refused with a message that does not echo them."""
    (tmp_path / "faxd_api_tokens").write_bytes(b"\xff\xfesecret")
    with pytest.raises(ConfigError, match="faxd_api_tokens") as info:
        Settings.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "secret" not in info.value.message.replace("faxd_api_tokens", "")
