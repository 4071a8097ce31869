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
    # Every unit that ended well marked itself; --resubmit runs the others only.
    done = os.path.join(experiment, "done")
    assert sorted(os.listdir(done)) == ["wid=0", "wid=1"]
    out = run("launch.py", f"--resubmit={experiment}", "--local")
    assert out.returncode == 0 and "every work unit has finished" in out.stdout
    os.remove(os.path.join(done, "wid=1"))
    out = run("launch.py", f"--resubmit={experiment}", "--local")
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "1 unfinished work units: 1" in out.stdout and "1 of 1" in out.stdout
    assert sorted(os.listdir(done)) == ["wid=0", "wid=1"]


def fake_slurm(tmp_path) -> dict:
    """An sbatch that records its arguments and script and prints job id 4242, and an
    scontrol that accepts everything: the environment to run launch.py with them."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/sbatch.args\ncat > {tmp_path}/sbatch.script\n'
        "echo 4242\n"
    )
    (fake / "scontrol").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "scontrol"):
        (fake / tool).chmod(0o755)
    return dict(ENV, PATH=f"{fake}:{os.environ['PATH']}")


def test_array_limit_signal_and_resubmission_with_a_fake_sbatch(sweep_config, tmp_path):
    env = fake_slurm(tmp_path)
    root = tmp_path / "runs"
    out = run_script(
        "launch.py", "--config", sweep_config(), f"--root={root}", "--array_limit=1",
        "--signal=240", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--hold --array=0-1%1" in (tmp_path / "sbatch.args").read_text()
    assert "#SBATCH --signal=B:TERM@240" in (tmp_path / "sbatch.script").read_text()
    experiment = root / "4242"
    (experiment / "done").mkdir()
    (experiment / "done" / "wid=0").write_text("")  # unit 0 finished, unit 1 did not
    out = run_script("launch.py", f"--resubmit={experiment}", "--array_limit=3", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    args = (tmp_path / "sbatch.args").read_text().split()
    assert "--array=1%3" in args and f"--export=ALL,LZ_EXPERIMENT={experiment}" in args
    assert f"--output={experiment}/logs/wid=%a.out" in args
    assert (tmp_path / "sbatch.script").read_text() == (experiment / "job.sh").read_text()
    launched = json.loads((experiment / "launch.json").read_text())
    assert launched["resubmissions"][0]["units"] == [1]
    script = (experiment / "job.sh").read_text()
    assert "EXPERIMENT=${LZ_EXPERIMENT:-" in script  # the new array's tasks find it
    out = run("launch.py", f"--resubmit={tmp_path / 'nowhere'}")
    assert out.returncode == 2 and "is not a directory" in out.stderr


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


def wait_for_job(job: str, env: dict, timeout: float = 600) -> str:
    """Waits until Slurm's queue no longer holds `job`; returns what it last held."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-j", job], env=env, capture_output=True, text=True
        ).stdout.strip()
        if not queue:
            break
        time.sleep(2)
    return queue


def test_sweep_on_a_real_slurm_cluster(slurm_cluster, sweep_config, tmp_path):
    env = slurm_cluster
    out = run(
        "launch.py", "--main", "train", "--config", sweep_config(), f"--root={tmp_path / 'runs'}",
        "--cpus_per_task=1", "--mem=1500M", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    xid = out.stdout.split("experiment ")[1].split(":")[0]
    queue = wait_for_job(xid, env)
    experiment = str(tmp_path / "runs" / xid)
    logs = {p: open(p).read()[-1500:] for p in glob.glob(os.path.join(experiment, "logs", "*"))}
    assert not queue, f"the array did not finish: {queue}"
    assert len(glob.glob(os.path.join(experiment, "wid=*", "results", "tiny.json"))) == 2, logs
    check_experiment(experiment, tmp_path)
    # A unit without its done marker is resubmitted as a new array that finds the
    # experiment although its job id differs, and logs beside the first run.
    os.remove(os.path.join(experiment, "done", "wid=1"))
    out = run("launch.py", f"--resubmit={experiment}", env=env)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    job = out.stdout.split("resubmitted as job array ")[1].split("_")[0]
    assert job != xid and not wait_for_job(job, env)
    assert os.path.exists(os.path.join(experiment, "done", "wid=1"))
    log = open(os.path.join(experiment, "logs", "wid=1.out")).read()
    assert log.count("task 1, restart") == 2, log[-2000:]


def test_collect_merges_trained_sweeps_per_evaluated_dataset(tmp_path):
    """Trained work units keep their evaluations under wid=*/eval/<dataset>/: --collect
    merges one dataset (it must be named when there are several) into one curve."""

    def row(lmbda, bpp, psnr):
        return {"image": "x", "model": "mbt2018_mean", "lmbda": lmbda, "bpp": bpp,
                "bpp_estimated": bpp, "psnr": psnr, "mse": 10 ** (-psnr / 10), "ms_ssim": 0.9,
                "encode_seconds": 0.1, "decode_seconds": 0.1}  # fmt: skip

    experiment = tmp_path / "123"
    for wid, lmbda in ((0, 0.01), (1, 0.05)):
        for dataset, shift in (("kodak", 0.0), ("clic", 1.0)):
            results = experiment / f"wid={wid}-m-lmbda={lmbda}" / "eval" / dataset / "results"
            results.mkdir(parents=True)
            (results / "x.json").write_text(json.dumps(row(lmbda, 0.2 + lmbda, 30 + shift)))
    out = run("eval.py", f"--collect={experiment}", f"--out={tmp_path / 'm'}")
    assert out.returncode == 2 and "evaluated on clic, kodak; pass --dataset" in out.stderr
    out = run("eval.py", f"--collect={experiment}", f"--out={tmp_path / 'm'}", "--dataset=kodak")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "m" / "results.json").read_text())
    assert summary["results"]["lmbda"] == [0.01, 0.05]
    assert summary["results"]["psnr-rgb"] == [30.0, 30.0]
    out = run("eval.py", f"--collect={experiment}", f"--out={tmp_path / 'm'}", "--dataset=div2k")
    assert out.returncode == 2 and "no evaluation on 'div2k'" in out.stderr
