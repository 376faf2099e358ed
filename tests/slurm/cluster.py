"""A real one-node SLURM cluster on this host's loopback, for the SLURM tests (README "Running on a
SLURM cluster"). The Snakemake SLURM plugin polls job states with sacct, which needs accounting, so
this runs every daemon a small cluster has: munged, MariaDB, slurmdbd, slurmctld and slurmd, each in
the foreground under this process's control, its pid recorded in <state>/pids.json and stopped by pid.

    python tests/slurm/cluster.py up      # install what is missing (Debian, as root), start, wait for sinfo
    python tests/slurm/cluster.py down    # stop the daemons that `up` started (by their recorded pids)

Idempotent: `up` first stops what an earlier `up` left running, then starts from an empty state
folder. Every address is 127.0.0.1; ports are picked free on it. The partition is OverSubscribe=
EXCLUSIVE: one job holds the whole node, so cells (5-7 GB each on a CPU) run one at a time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEBIAN_PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLUSTER, PARTITION, ACCOUNT = "saltbench", "saltbench", "saltbench"
DB_USER, DB_PASSWORD, DB_NAME = "slurm", "saltbench-loopback-only", "slurm_acct_db"
DEFAULT_STATE = Path(os.environ.get("SALTBENCH_SLURM_STATE", "/tmp/saltbench-slurm"))
# Where every SLURM command looks when SLURM_CONF is unset. The plugin's job step (jobstep 0.6.1)
# drops all SLURM_* variables, SLURM_CONF included, before its nested srun, so the configuration must
# be found here too: a link to ours while the cluster runs, on a host that has no SLURM of its own.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message says which step and its log."""


@dataclass(frozen=True)
class Cluster:
    """A started cluster: `env` is what every SLURM client (sbatch, sacct, Snakemake) must run with."""
    state: Path
    node: str
    env: dict[str, str]


def install_missing() -> None:
    """apt-get the Debian packages when one of the daemons is missing; needs root."""
    if all(shutil.which(daemon) for daemon in DAEMONS):
        return
    if os.geteuid() != 0:
        raise ClusterError(f"{', '.join(DEBIAN_PACKAGES)} are not installed and installing them needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_line() -> tuple[str, str]:
    """This host's node name and its real CPUs and memory, as slurmd -C reports them."""
    report = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(row for row in report.splitlines() if row.startswith("NodeName="))
    fields = dict(item.split("=", 1) for item in line.split())
    hardware = " ".join(f"{key}={fields[key]}" for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                         "ThreadsPerCore", "RealMemory"))
    return fields["NodeName"], hardware


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def _configure(state: Path) -> tuple[str, dict[str, int]]:
    """Write slurm.conf, slurmdbd.conf and a munge key under `state`; returns the node name and ports."""
    for folder in ("etc", "log", "run", "spool/ctld", "spool/d", "mysql", "munge"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    (state / "munge").chmod(0o700)
    ports = {name: _free_port() for name in ("mysql", "dbd", "ctld", "d")}
    node, hardware = _node_line()
    munge_socket = state / "munge" / "munge.socket"
    auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
    _write(state / "etc" / "slurm.conf", f"""# one-node cluster on loopback, written by tests/slurm/cluster.py
ClusterName={CLUSTER}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports["ctld"]}
SlurmdPort={ports["d"]}
SlurmUser=root
SlurmdUser=root
{auth}CredType=cred/munge
StateSaveLocation={state}/spool/ctld
SlurmdSpoolDir={state}/spool/d
SlurmctldPidFile={state}/run/slurmctld.pid
SlurmdPidFile={state}/run/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports["dbd"]}
AccountingStoreFlags=job_comment
# the munge socket for connections to slurmdbd (sacct, sacctmgr, slurmctld): AuthInfo does not reach them
AccountingStoragePass={munge_socket}
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} {hardware} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
""")
    _write(state / "etc" / "slurmdbd.conf", f"""# accounting for the one-node cluster, written by tests/slurm/cluster.py
{auth}DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports["dbd"]}
SlurmUser=root
PidFile={state}/run/slurmdbd.pid
LogFile={state}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports["mysql"]}
StorageUser={DB_USER}
StoragePass={DB_PASSWORD}
StorageLoc={DB_NAME}
""", mode=0o600)
    subprocess.run(["mungekey", "--create", f"--keyfile={state / 'munge' / 'munge.key'}", "--force"],
                   check=True, capture_output=True)
    return node, ports


class _Daemons:
    """Start daemons in the foreground, each in its own session, and remember their pids on disk."""

    def __init__(self, state: Path):
        self.state = state
        self.pids: dict[str, int] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = (self.state / "log" / f"{name}.out").open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pids[name] = process.pid
        (self.state / "pids.json").write_text(json.dumps(self.pids))
        time.sleep(0.5)
        if process.poll() is not None:
            raise ClusterError(f"{name} exited at once ({process.returncode}); see {self.state}/log/")


def _wait(what: str, check, timeout: float, state: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise ClusterError(f"{what} not ready after {timeout:.0f} s; see {state}/log/")


def _ok(command: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(command, env=env, capture_output=True).returncode == 0


def stop(state: Path = DEFAULT_STATE) -> list[str]:
    """Stop, by pid, every daemon a `start` recorded under `state` (newest first); returns their names."""
    record = state / "pids.json"
    if not record.exists():
        return []
    pids = json.loads(record.read_text())
    if "slurmctld" in pids and _alive(pids["slurmctld"]):
        _cancel_jobs(state)
    for name, pid in reversed(list(pids.items())):
        _terminate(pid)
    record.unlink()
    if SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == state / "etc" / "slurm.conf":
        SYSTEM_CONF.unlink()
    return list(pids)


def _cancel_jobs(state: Path, grace: float = 60) -> None:
    """scancel what still runs (a test that failed half-way): a job's processes belong to slurmstepd,
    which outlives slurmd, so stopping the daemons alone would leave them running."""
    env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=env, capture_output=True, timeout=30)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30)
        if queue.returncode != 0 or not queue.stdout.strip():
            return
        time.sleep(1)


def _terminate(pid: int, grace: float = 20) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
        except ChildProcessError:  # started by another process (`cluster.py up`): poll instead
            done = 0 if _alive(pid) else pid
        if done:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def start(state: Path = DEFAULT_STATE, timeout: float = 120) -> Cluster:
    """Install what is missing, then start munged, MariaDB, slurmdbd, slurmctld and slurmd on loopback
    and wait until sinfo shows the node idle. On any failure the daemons already started are stopped."""
    install_missing()
    stop(state)
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        raise ClusterError(f"{SYSTEM_CONF} exists: this host has a SLURM of its own (or a cluster started "
                           "from another state folder runs); the test cluster does not replace it")
    shutil.rmtree(state, ignore_errors=True)
    node, ports = _configure(state)
    env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    daemons = _Daemons(state)
    try:
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        (state / "pids.json").write_text("{}")  # so that stop() removes the link whatever happens next
        SYSTEM_CONF.symlink_to(state / "etc" / "slurm.conf")
        _start_all(state, node, ports, env, daemons, timeout)
    except BaseException:
        stop(state)
        raise
    return Cluster(state=state, node=node, env=env)


def _start_all(state: Path, node: str, ports: dict[str, int], env: dict[str, str], daemons: _Daemons,
               timeout: float) -> None:
    munge = state / "munge"
    daemons.start("munged", ["munged", "--foreground", "--force", f"--key-file={munge / 'munge.key'}",
                             f"--socket={munge / 'munge.socket'}", f"--pid-file={munge / 'munged.pid'}",
                             f"--log-file={state / 'log' / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"], env)
    _wait("munged", lambda: (munge / "munge.socket").exists(), timeout, state)

    mysql = state / "mysql"
    mysql_socket = state / "run" / "mysqld.sock"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={mysql}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                   check=True, capture_output=True, env=env)
    daemons.start("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={mysql}", "--user=root",
                               "--bind-address=127.0.0.1", f"--port={ports['mysql']}", f"--socket={mysql_socket}",
                               f"--pid-file={state / 'run' / 'mariadbd.pid'}", "--skip-name-resolve",
                               "--innodb-buffer-pool-size=64M", f"--log-error={state / 'log' / 'mariadbd.log'}"], env)
    client = ["mariadb", "--no-defaults", f"--socket={mysql_socket}", "-uroot"]
    _wait("MariaDB", lambda: _ok([*client, "-e", "SELECT 1"], env), timeout, state)
    subprocess.run([*client, "-e", f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
                    f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"], check=True, capture_output=True, env=env)

    conf = state / "etc"
    daemons.start("slurmdbd", ["slurmdbd", "-D", "-s"], {**env, "SLURM_CONF": str(conf / "slurm.conf")})
    # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF
    _wait("slurmdbd", lambda: _ok(["sacctmgr", "-n", "list", "cluster"], env), timeout, state)
    for command in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, "Description=saltbench tests",
                                                  "Organization=saltbench"],
                    ["add", "user", os.environ.get("USER", "root"), f"Account={ACCOUNT}", f"DefaultAccount={ACCOUNT}"]):
        done = subprocess.run(["sacctmgr", "-i", *command], capture_output=True, text=True, env=env)
        if done.returncode != 0 and "Nothing new added" not in done.stdout + done.stderr:
            raise ClusterError(f"sacctmgr {' '.join(command)}: {done.stdout}{done.stderr}")

    daemons.start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf / "slurm.conf")], env)
    daemons.start("slurmd", ["slurmd", "-D", "-N", node, "-f", str(conf / "slurm.conf")], env)
    _wait("the node (sinfo idle)", lambda: _node_state(node, env) == "idle", timeout, state)


def _node_state(node: str, env: dict[str, str]) -> str:
    done = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, env=env)
    return done.stdout.strip() if done.returncode == 0 else ""


@contextmanager
def running(state: Path = DEFAULT_STATE) -> Iterator[Cluster]:
    """The cluster for the block; its daemons are stopped afterwards however the block ends."""
    cluster = start(state)
    try:
        yield cluster
    finally:
        stop(state)


def main(argv: list[str]) -> None:
    if argv[:1] == ["up"]:
        cluster = start()
        print(f"cluster up: node {cluster.node}, partition {PARTITION}; export SLURM_CONF={cluster.env['SLURM_CONF']}")
    elif argv[:1] == ["down"]:
        print("stopped:", ", ".join(stop()) or "nothing was running")
    else:
        raise SystemExit("usage: python tests/slurm/cluster.py up|down")


if __name__ == "__main__":
    main(sys.argv[1:])
