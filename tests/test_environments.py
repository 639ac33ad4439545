"""Environments for models' own packages, built with the real uv from the real indexes: keyed,
layered over the base (a pinned version wins), built once under a lock, bounded by LRU eviction,
built in a sandbox that writes only its own directories. No JVM."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sparkrunner.command import child_env
from sparkrunner.config import EnvironmentSettings, Settings
from sparkrunner.environments import (LOG_PREFIX, Base, EnvironmentCache, Hold, env_key, indexes_from, probe_base,
                                      reused_pins, to_install)
from sparkrunner.errors import EnvironmentFailed
from sparkrunner.requirements import Requirements
from sparkrunner.sandbox import choose, probe

#: Small pure-Python packages the base does not have, each with several versions on the index.
ABSENT = "inflection"
BASE = Base("/py", "3.11.7", ("/site",), {"pyspark": "4.3.0", "pandas": "2.3.3", "numpy": "2.2.0",
                                          "requests": "2.32.3"})


def reqs(*lines: str) -> Requirements:
    return Requirements("$.model.storedModel.modelAssets[1]", tuple(sorted(lines)))


# -- pure parts ---------------------------------------------------------------------------------

def test_the_key_follows_python_pyspark_the_base_s_packages_and_the_set():
    config = EnvironmentSettings()
    key = env_key(BASE, reqs("inflection==0.5.1"), config)
    assert key == env_key(BASE, reqs("inflection==0.5.1"), config)
    others = [env_key(BASE, reqs("inflection==0.5.0"), config),
              env_key(Base("/py", "3.12.1", (), BASE.distributions), reqs("inflection==0.5.1"), config),
              env_key(Base("/py", "3.11.7", (), {**BASE.distributions, "pyspark": "4.2.0"}),
                      reqs("inflection==0.5.1"), config),
              env_key(Base("/py", "3.11.7", (), {**BASE.distributions, "pandas": "2.2.0"}),
                      reqs("inflection==0.5.1"), config),
              env_key(BASE, reqs("inflection==0.5.1"), EnvironmentSettings(only_binary=False)),
              # requests is not installed where the base has the resolved version: a base with
              # another requests is another environment
              env_key(Base("/py", "3.11.7", (), {**BASE.distributions, "requests": "2.33.0"}),
                      reqs("inflection==0.5.1"), config)]
    assert len({key, *others}) == 7


def test_the_base_packages_are_held_unless_the_model_asks_for_another_version():
    config = EnvironmentSettings()
    assert reused_pins(BASE, reqs("inflection"), config) == ["numpy==2.2.0", "pandas==2.3.3", "pyspark==4.3.0"]
    assert "pandas==2.3.3" in reused_pins(BASE, reqs("pandas>=2"), config)
    assert "pandas==2.3.3" not in reused_pins(BASE, reqs("pandas==3.0.0"), config)


def test_what_the_base_has_at_the_resolved_version_is_not_installed_again():
    lock = "inflection==0.5.1\nnumpy==2.2.0\nrequests==2.0.0\nPandas==2.3.3\n"
    assert to_install(lock, BASE) == ["inflection==0.5.1", "requests==2.0.0"]


def test_the_indexes_are_pip_s_unless_configured():
    pip = {"global.extra-index-url": "file:///srv/a/simple file:///srv/b/simple",
           "global.find-links": "/srv/wheels", ":env:.find-links": "/srv/env-wheels",
           "global.cert": "/etc/ssl/certs/ca.crt"}
    found = indexes_from(EnvironmentSettings(), pip)
    assert found.uv_env() == {"UV_EXTRA_INDEX_URL": "file:///srv/a/simple file:///srv/b/simple",
                              "UV_FIND_LINKS": "/srv/env-wheels"}
    assert found.cert == "/etc/ssl/certs/ca.crt"
    configured = indexes_from(EnvironmentSettings(index_url="file:///srv/mirror/simple"), pip)
    assert configured.uv_env() == {"UV_INDEX_URL": "file:///srv/mirror/simple"}


# -- real builds ---------------------------------------------------------------------------------

def cache(tmp_path: Path, sandbox: bool = False, **config) -> EnvironmentCache:
    settings = Settings(data_dir=tmp_path / "data", environments=EnvironmentSettings(**config))
    box = choose(settings, child_env(settings), service=True, asked=True) if sandbox else None
    return EnvironmentCache(tmp_path / "envs", settings, box)


def run_python(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_pinned_version_wins_over_the_base_s_and_the_base_still_serves_the_rest(tmp_path):
    import tabulate  # in the base (a dependency of the test tools), at a version the env replaces

    other = "0.8.10" if tabulate.__version__ != "0.8.10" else "0.9.0"
    env, hold = cache(tmp_path).ensure(reqs(f"tabulate=={other}", f"{ABSENT}==0.5.0"))
    try:
        out = run_python(env.python, "import tabulate, inflection, pyspark, yaml; "
                                     "print(tabulate.__version__, inflection.__version__, pyspark.__version__)")
        assert out.split() == [other, "0.5.0", "4.3.0"]
        meta = json.loads((env.path / "meta.json").read_text())
        assert "pyspark==4.3.0" not in meta["installed"]  # reused from the base, not installed again
    finally:
        hold.close()


def test_jobs_needing_the_same_set_wait_for_one_build_and_then_reuse_it(tmp_path):
    envs = cache(tmp_path)
    found: list = []

    def ensure():
        found.append(envs.ensure(reqs(f"{ABSENT}==0.5.1")))

    threads = [threading.Thread(target=ensure) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({env.path for env, _ in found}) == 1
    built = [env for env, _ in found if env.log_lines[0].startswith(f"{LOG_PREFIX}built ")]
    reused = [env for env, _ in found if env.log_lines[0].startswith(f"{LOG_PREFIX}reusing ")]
    assert len(built) == 1 and len(reused) == 2
    assert [p.name for p in (tmp_path / "envs").iterdir() if p.name.startswith(".build-")] == []
    for _, hold in found:
        hold.close()


def test_an_unknown_package_fails_with_uv_s_own_words(tmp_path):
    envs = cache(tmp_path)
    with pytest.raises(EnvironmentFailed) as caught:
        envs.ensure(reqs("sparkrunner-no-such-package-zq==1.0"))
    assert "sparkrunner-no-such-package-zq" in str(caught.value) and "not found" in str(caught.value)
    assert "sparkrunner-no-such-package-zq" in envs.check(reqs("sparkrunner-no-such-package-zq==1.0"))
    assert envs.check(reqs(f"{ABSENT}==0.5.1")) is None
    assert not any(p.name.startswith(("ee", ".build")) for p in (tmp_path / "envs").iterdir()
                   if p.is_dir() and p.name not in ("locks", "uv-cache"))


def test_a_set_seen_to_resolve_is_checked_once_and_a_refused_one_each_time(tmp_path):
    envs = cache(tmp_path)
    compiled = []
    compile_with_uv = envs._compile
    envs._compile = lambda work, requirements, timeout: (compiled.append(requirements.lines),
                                                         compile_with_uv(work, requirements, timeout))[1]
    good, bad = reqs(f"{ABSENT}==0.5.1"), reqs("sparkrunner-no-such-package-zq==1.0")
    with ThreadPoolExecutor(2) as pool:  # two requests at once: uv runs once for the set
        assert list(pool.map(envs.check, [good, good])) == [None, None]
    assert envs.check(good) is None
    assert all("sparkrunner-no-such-package-zq" in envs.check(bad) for _ in range(2))
    assert compiled == [good.lines, bad.lines, bad.lines]


def write_entry(root: Path, key: str, size: int, used: float) -> None:
    (root / key).mkdir(parents=True)
    (root / key / "meta.json").write_text(json.dumps({"size": size}))
    os.utime(root / key / "meta.json", (used, used))


def test_the_least_recently_used_environments_not_in_use_are_evicted(tmp_path):
    envs = cache(tmp_path, max_cache_mb=3)
    root = tmp_path / "envs"
    (root / "locks").mkdir(parents=True)
    now = time.time()
    mb = 1024 * 1024
    for key, used in (("oldest", now - 400), ("old-in-use", now - 300), ("newer", now - 200),
                      ("newest", now - 100)):
        write_entry(root, key, mb, used)
    running = Hold(root / "locks" / "old-in-use.use")
    running.shared()
    try:
        assert envs.evict() == ["oldest"]  # 4 MB: one must go; the one in use stays
        write_entry(root, "another", 2 * mb, now)
        assert envs.evict(keep="another") == ["newer", "newest"]
    finally:
        running.close()
    assert sorted(p.name for p in root.iterdir() if p.name != "locks") == ["another", "old-in-use"]


@pytest.mark.skipif(probe() is not None, reason="bubblewrap cannot run here")
def test_a_sandboxed_build_writes_only_its_own_directory_and_uv_s_cache(tmp_path):
    envs = cache(tmp_path, sandbox=True)
    (tmp_path / "envs" / "uv-cache").mkdir(parents=True)
    work = tmp_path / "envs" / ".build-x"
    (work / "tmp").mkdir(parents=True)
    import sys

    # Paths of the host it sees read-only (the base installation), and paths it does not see
    # (the data directory, the home directory, pytest's files: under its /tmp, its own scratch).
    outside = [Path(sys.prefix) / "sparkrunner-escape", tmp_path / "outside",
               tmp_path / "envs" / "other", Path.home() / "sparkrunner-escape", tmp_path / "data" / "escape"]
    (tmp_path / "data").mkdir()
    script = "; ".join(f"touch {p} 2>/dev/null" for p in outside)
    script += f"; touch {work}/inside {tmp_path}/envs/uv-cache/inside /tmp/scratch && echo inside-ok"
    script += f"; touch {sys.prefix}/sparkrunner-escape 2>&1 | grep -q 'Read-only' && echo read-only"
    done = subprocess.run([*envs.build_sandbox_argv(work), "/bin/sh", "-c", script],
                          capture_output=True, text=True)
    assert done.stdout.split() == ["inside-ok", "read-only"], done.stdout + done.stderr
    assert not any(p.exists() for p in outside)
    assert (work / "inside").is_file() and (work / "tmp" / "scratch").is_file()
    assert (tmp_path / "envs" / "uv-cache" / "inside").is_file()
    # And a real build in it works.
    env, hold = envs.ensure(reqs(f"{ABSENT}==0.5.1"))
    try:
        assert run_python(env.python, "import inflection; print(inflection.__version__)") == "0.5.1"
    finally:
        hold.close()


def test_a_build_about_to_be_renamed_into_place_is_never_evicted(tmp_path):
    envs = cache(tmp_path, max_cache_mb=1)
    root = tmp_path / "envs"
    (root / "locks").mkdir(parents=True)
    write_entry(root, ".build-k-x1", 2 * 1024 * 1024, time.time() - 100)  # its meta.json is written
    assert envs.entries() == [] and envs.evict() == []
    assert (root / ".build-k-x1" / "meta.json").is_file()


def test_uv_s_download_cache_is_not_removed_while_a_build_uses_it(tmp_path):
    envs = cache(tmp_path, max_cache_mb=1)
    (tmp_path / "envs" / "locks").mkdir(parents=True)
    envs.uv_cache.mkdir()
    (envs.uv_cache / "wheel").write_bytes(b"x" * 2 * 1024 * 1024)
    building = Hold(envs.uv_cache_lock)
    building.shared()  # as another job's uv run holds it
    try:
        envs.evict()
        assert (envs.uv_cache / "wheel").is_file()
    finally:
        building.close()
    envs.evict()
    assert not envs.uv_cache.exists()


def test_the_base_is_probed_with_its_standard_library_only(tmp_path):
    """A base interpreter (spark.python) need not have packaging: the probe uses none."""
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    base = probe_base(str(tmp_path / "bare" / "bin" / "python"))
    assert base.version == ".".join(map(str, sys.version_info[:3]))
    assert "packaging" not in base.distributions
    assert probe_base(sys.executable).distributions["pyspark"] == "4.3.0"
