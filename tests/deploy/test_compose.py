"""docker-compose.yml runs exactly one worker: the CPU one by default, the GPU one alone with `--profile gpu`.

Asked of the docker-compose that is installed, with .env.example's settings and dummy secrets. Compose v2
(`docker compose` or a v2 `docker-compose`) lists the services of the active profiles with
`config --services`. Debian's docker-compose 1.29 lists every service there whatever the profiles, so for it
the active services come from its own library (the code `up` runs), with a stand-in for the absent engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Compose v1's own profile resolution: `--profile` flags if any, else COMPOSE_PROFILES from the env file.
_V1_ACTIVE_SERVICES = """
import sys
from compose.cli.command import get_config_from_options, get_profiles_from_options
from compose.config.environment import Environment
from compose.project import Project
from docker.errors import NotFound

class NoEngine:  # volumes and networks ask the engine whether they exist: answer "no"
    def __getattr__(self, name):
        def not_found(*args, **kwargs):
            raise NotFound("no engine")
        return not_found

project_dir, env_file, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
options = {"--env-file": env_file, "--profile": profiles}
environment = Environment.from_env_file(project_dir, env_file)
config = get_config_from_options(project_dir, options, environment)
project = Project.from_config("prefloop", config, NoEngine(),
                              enabled_profiles=get_profiles_from_options(options, environment))
print("\\n".join(service.name for service in project.get_services()))
"""


def _compose_command() -> tuple[list[str], int]:
    """The compose CLI to ask and its major version; skips (or fails under CI) when there is none."""
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run([docker, "compose", "version", "--short"], capture_output=True, text=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"], 2
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True, check=True)
        return [standalone], int(re.match(r"v?(\d+)", version.stdout.strip()).group(1))  # type: ignore[union-attr]
    message = "docker-compose is not installed (Debian: apt-get install docker-compose)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.env.example as a user fills it in: the two required secrets set, everything else as shipped."""
    text = (REPO / ".env.example").read_text()
    text = re.sub(r"(?m)^POSTGRES_PASSWORD=$", "POSTGRES_PASSWORD=dummy-password-for-config", text)
    text = re.sub(r"(?m)^PREFLOOP_SECRET_KEY=$", "PREFLOOP_SECRET_KEY=dummy-secret-key-for-config-only", text)
    path = tmp_path_factory.mktemp("compose") / "env"
    path.write_text(text)
    return path


def _services(env_file: Path, *profiles: str) -> set[str]:
    command, major = _compose_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}  # only the env file decides
    flags = [f"--profile={name}" for name in profiles]
    base = [*command, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
            "--env-file", str(env_file)]
    checked = subprocess.run([*base, *flags, "config", "--quiet"], cwd=REPO, env=env, capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr
    if major >= 2:
        listing = [*base, *flags, "config", "--services"]
    else:
        interpreter = Path(command[0]).read_text().splitlines()[0].removeprefix("#!").split()
        listing = [*interpreter, "-c", _V1_ACTIVE_SERVICES, str(REPO), str(env_file), *profiles]
    result = subprocess.run(listing, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_default_runs_the_cpu_worker_only(env_file: Path) -> None:
    services = _services(env_file)
    assert {name for name in services if "worker" in name} == {"worker-cpu"}
    assert {"db", "migrate", "web"} <= services


def test_gpu_profile_runs_the_gpu_worker_only(env_file: Path) -> None:
    services = _services(env_file, "gpu")
    assert {name for name in services if "worker" in name} == {"worker-gpu"}
    assert {"db", "migrate", "web"} <= services


def test_missing_secrets_are_refused(env_file: Path, tmp_path: Path) -> None:
    bare = tmp_path / "env"
    bare.write_text(re.sub(r"(?m)^(POSTGRES_PASSWORD|PREFLOOP_SECRET_KEY)=.*$", "", env_file.read_text()))
    command, _major = _compose_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run([*command, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
                             "--env-file", str(bare), "config", "--quiet"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr or "set PREFLOOP_SECRET_KEY in .env" in result.stderr
