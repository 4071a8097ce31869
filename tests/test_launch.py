"""launch.py: local sweeps, SIGTERM and resume, bad input, and a real one-node Slurm cluster."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from tests.helpers import ROOT, apt_install, run_in_process, run_script, smooth_image

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


# In this process unless a separate process is the point (the sweep's own processes, a
# signal to a running fit).
run = run_in_process


@pytest.fixture
def sweep_config(tmp_path):
    """A 2-unit sweep (two lambdas) of a tiny C3 fit on one 16x24 image."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(smooth_image(16, 24, seed=9)).save(images / "tiny.png")

    def make(noise_steps=20, name="sweep.py", hyper=True):
        text = f"""
            from configs import c3_base

            def get_config():
                config = c3_base.get_base_config()
                config.name = "tiny"
                config.data.name = "folder"
                config.data.root = {str(images)!r}
                config.fit.num_noise_steps = {noise_steps}
                config.fit.max_ste_steps = 2
                config.fit.log_every = 10
                config.fit.checkpoint_every = 10
                config.fit.weight_steps = (2.0**-7,)
                config.fit.bias_steps = (2.0**-7,)
                return config
            """
        if hyper:
            text += """
            def get_hyper():
                return [{"model.lmbda": 1e-3}, {"model.lmbda": 4e-3}]
            """
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return make


def check_experiment(experiment: str, tmp_path):
    results = sorted(glob.glob(os.path.join(experiment, "wid=*", "results", "tiny.json")))
    assert len(results) == 2, os.listdir(experiment)
    assert os.path.basename(os.path.dirname(os.path.dirname(results[0]))).startswith(
        "wid=0-tiny-lmbda=0.001"
    )
    assert os.path.isfile(os.path.join(experiment, "config.py"))
    out = run("eval.py", f"--collect={experiment}", f"--out={tmp_path / 'merged'}")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted(summary["results"]["lmbda"]) == [1e-3, 4e-3]
    csv = (tmp_path / "merged" / "results.csv").read_text().splitlines()
    assert csv[0] == "bpp,psnr" and len(csv) == 3


def test_local_sweep_with_two_jobs(sweep_config, tmp_path):
    out = run_script(
        "launch.py", "--main", "train", "--config", sweep_config(), "--local", "--jobs", "2",
        f"--root={tmp_path / 'runs'}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "2 work units" in out.stdout and "2 of 2" in out.stdout  # progress per unit
    (experiment,) = glob.glob(str(tmp_path / "runs" / "*"))
    check_experiment(experiment, tmp_path)


def test_sigterm_saves_and_the_rerun_resumes(sweep_config, tmp_path):
    config = sweep_config(noise_steps=800, name="long.py")
    workdir = tmp_path / "unit"
    args = [sys.executable, "train.py", "--config", config, "--hid", "0", f"--workdir={workdir}"]
    process = subprocess.Popen(args, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    checkpoint = workdir / "checkpoints" / "tiny" / "checkpoint"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint was written"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "stop requested" in stderr
    assert not (workdir / "results" / "tiny.json").exists()
    rerun = run("train.py", "--config", config, "--hid", "0", f"--workdir={workdir}")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = [line for line in rerun.stderr.splitlines() if "resuming from" in line]
    assert resumed and "noise step 0," not in resumed[0], rerun.stderr[-2000:]
    assert (workdir / "results" / "tiny.json").exists()
    again = run("train.py", "--config", config, "--hid", "0", f"--workdir={workdir}")
    assert again.returncode == 0 and "already finished" in again.stderr


def test_bad_input(sweep_config, tmp_path):
    no_sweep = sweep_config(name="nosweep.py", hyper=False)
    out = run("launch.py", "--config", no_sweep, "--dry_run")
    assert out.returncode == 2 and "has no get_hyper()" in out.stderr.strip().splitlines()[-1]
    config = sweep_config()
    empty_path = dict(ENV, PATH=str(tmp_path / "nothing"))
    out = run("launch.py", "--config", config, f"--root={tmp_path}/r", env=empty_path)
    assert out.returncode == 2 and "sbatch not found" in out.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    with_fake = dict(ENV, PATH=f"{fake}:{os.environ['PATH']}")
    out = run("launch.py", "--config", config, f"--root={tmp_path}/r", env=with_fake)
    assert out.returncode == 2 and "sbatch failed: sbatch: error: invalid partition" in out.stderr
    assert not (tmp_path / "r").exists()  # nothing written before sbatch accepted the job
    out = run("launch.py", "--main", "itinf", "--config", config, "--dry_run")
    assert out.returncode == 2 and "--main itinf needs --workdirs" in out.stderr
    out = run("launch.py", "--main", "eval", "--workdirs", str(tmp_path / "none*"))
    assert out.returncode == 2 and "matches no directory" in out.stderr
    out = run("train.py", "--config", config, "--hid", "2", f"--workdir={tmp_path}/w")
    assert out.returncode == 2 and "out of range" in out.stderr
    for result in (out,):
        assert "Traceback" not in result.stderr


# A real Slurm cluster on this machine (../reference recipe): root only, as in CI.

SLURM_CONF = """\
ClusterName=ziptest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _pid(path) -> int | None:
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture
def slurm_cluster(tmp_path):
    """Installs Slurm and munge if needed, starts our own daemons, stops only those."""
    if os.geteuid() != 0:
        pytest.skip("the real Slurm test needs root (it installs and starts slurm-wlm, munge)")
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        pytest.skip("a slurmctld is already running here; not touching it")
    if not (shutil.which("slurmctld") and shutil.which("munged")):
        install = apt_install(["slurm-wlm", "munge"])
        assert install.returncode == 0, install.stderr[-2000:]
    started = []
    munge_pid = "/run/munge/munged.pid"
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        started.append(munge_pid)
    directory = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (directory / sub).mkdir(parents=True)
    memory = min(20000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2000)
    conf = directory / "slurm.conf"
    conf.write_text(SLURM_CONF.format(d=directory, cpus=os.cpu_count(), memory=memory))
    env = dict(ENV, SLURM_CONF=str(conf))
    subprocess.run(["/usr/sbin/slurmctld", "-c"], env=env, check=True)
    started.append(str(directory / "slurmctld.pid"))
    subprocess.run(["/usr/sbin/slurmd", "-N", "localhost"], env=env, check=True)
    started.append(str(directory / "slurmd.pid"))
    deadline = time.time() + 60
    while time.time() < deadline:
        info = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
        if info.stdout.strip() in ("idle", "mix", "alloc"):
            break
        time.sleep(1)
    try:
        yield env
    finally:
        for pid_file in reversed(started):
            pid = _pid(pid_file)
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def test_sweep_on_a_real_slurm_cluster(slurm_cluster, sweep_config, tmp_path):
    env = slurm_cluster
    out = run(
        "launch.py", "--main", "train", "--config", sweep_config(), f"--root={tmp_path / 'runs'}",
        "--cpus_per_task=1", "--mem=1500M", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    xid = out.stdout.split("experiment ")[1].split(":")[0]
    deadline = time.time() + 600
    while time.time() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-j", xid], env=env, capture_output=True, text=True
        ).stdout.strip()
        if not queue:
            break
        time.sleep(2)
    experiment = str(tmp_path / "runs" / xid)
    logs = {p: open(p).read()[-1500:] for p in glob.glob(os.path.join(experiment, "logs", "*"))}
    assert not queue, f"the array did not finish: {queue}"
    assert len(glob.glob(os.path.join(experiment, "wid=*", "results", "tiny.json"))) == 2, logs
    check_experiment(experiment, tmp_path)
