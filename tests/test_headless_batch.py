"""scripts/kandinsky_queue.py --batch: jobs spread over several servers, faults, manifest and resume.

CPU tests: fake ComfyUI servers (stdlib HTTP) that run a prompt in a fraction of a second; one dies
mid-batch, and every server rejects a job with steps 0 (validation) and fails a job whose prompt asks for
it (execution). Real-host test (marked comfyui, with COMFYUI_PATH): two real ComfyUI servers run a
10-job text-to-image batch on tiny models, one is killed midway, and all 10 images arrive.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from test_comfyui_host import COMFYUI_PATH, TINY_LATENT, ComfyServer, png_size
from test_headless import SCRIPT, WORKFLOWS, FakeComfy, kq

sys.path.insert(0, str(SCRIPT.parent))  # the batch modules beside the script (kq is already kandinsky_queue)
import kandinsky_batch_jobs as batch_jobs  # noqa: E402
import kandinsky_batch_runner as runner  # noqa: E402

T2I = str(WORKFLOWS / "api" / "kandinsky-2-2-text-to-image.json")
SAMPLER = "Decoder: sample latent"


def node(prompt: dict, kind: str) -> dict:
    return next(n for n in prompt.values() if n["class_type"] == kind)["inputs"]


class FakeServer:
    """A ComfyUI stand-in: POST /prompt validates and queues, a prompt is done `run_s` later, /view serves it.

    `die_after=N`: once it has accepted N prompts it stops answering anything (drops connections)."""

    def __init__(self, run_s: float = 0.05, die_after: int | None = None) -> None:
        self.run_s, self.die_after = run_s, die_after
        self.accepted: list[str] = []  # prompt texts queued
        self.delivered: list[str] = []  # prompt texts whose image was downloaded
        self.finished_at: dict[str, float] = {}
        self.prompts: dict[str, dict] = {}
        self.dead = False
        self.lock = threading.Lock()
        fake = self

        class Handler(FakeComfy):  # its quiet log and _json answer
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if fake.dead:
                    self.close_connection = True
                    return
                prompt = json.loads(body)["prompt"]
                if node(prompt, "KandinskyUNetSampler")["steps"] < 1:
                    return self._json(400, {"error": {"message": "Prompt outputs failed validation"}, "node_errors": {
                        "7": {"errors": [{"message": "Value 0 smaller than min of 1", "details": "steps"}]}}})
                with fake.lock:
                    prompt_id = f"p{len(fake.prompts)}"
                    fake.prompts[prompt_id] = prompt
                    fake.accepted.append(node(prompt, "KandinskyPriorEncode")["prompt"])
                    fake.finished_at[prompt_id] = time.monotonic() + fake.run_s
                    fake.dead = fake.die_after is not None and len(fake.accepted) >= fake.die_after
                self._json(200, {"prompt_id": prompt_id, "number": 0, "node_errors": {}})

            def do_GET(self):
                if fake.dead:
                    self.close_connection = True
                    return
                if self.path.startswith("/history/"):
                    prompt_id = self.path.rsplit("/", 1)[1]
                    if time.monotonic() < fake.finished_at[prompt_id]:
                        return self._json(200, {})
                    text = node(fake.prompts[prompt_id], "KandinskyPriorEncode")["prompt"]
                    if "explode" in text:
                        status = {"status_str": "error", "messages": [["execution_error", {
                            "node_id": "7", "exception_type": "RuntimeError", "exception_message": "boom"}]]}
                        return self._json(200, {prompt_id: {"outputs": {}, "status": status}})
                    image = {"filename": f"{prompt_id}.png", "subfolder": "", "type": "output"}
                    return self._json(200, {prompt_id: {"outputs": {"9": {"images": [image]}},
                                                        "status": {"status_str": "success", "messages": []}}})
                if self.path.startswith("/view?"):
                    prompt_id = self.path.split("filename=")[1].split(".png")[0]
                    prompt = fake.prompts[prompt_id]
                    text = node(prompt, "KandinskyPriorEncode")["prompt"]
                    with fake.lock:
                        fake.delivered.append(text)
                    body = json.dumps([text, node(prompt, "KandinskyPriorEncode")["seed"]]).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self._json(404, {})

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture()
def servers():
    made: list[FakeServer] = []

    def make(**kw) -> FakeServer:
        made.append(FakeServer(**kw))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(runner.BatchRunner, "poll", 0.02)
    monkeypatch.setattr(runner.BatchRunner, "retry_delay", 0.02)


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
    return path


def manifest_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def ten_jobs(bad_steps: int = 0) -> list[dict]:
    jobs = [{"name": f"fox-{i}", "prompt": f"fox {i}", "seed": 100 + i} for i in range(10)]
    jobs[3][f"{SAMPLER}.steps"] = bad_steps  # rejected by validation when 0
    jobs[6]["prompt"] = "explode 6"  # fails while running
    return jobs


def test_batch_over_servers_one_dies_one_job_rejected_one_fails(servers, tmp_path, capsys):
    healthy, dying, other = servers(), servers(die_after=2), servers()
    batch = write_jobs(tmp_path / "jobs.jsonl", ten_jobs())
    out = tmp_path / "out"
    code = kq.main([T2I, "--batch", str(batch), "--output", str(out), "--per-server", "2",
                    *[arg for s in (healthy, dying, other) for arg in ("--server", s.url)]])
    err = capsys.readouterr().err
    assert code == 1  # two jobs failed
    lines = manifest_lines(out)
    assert sorted(r["job"] for r in lines) == sorted(f"fox-{i}" for i in range(10))  # each job once
    by_job = {r["job"]: r for r in lines}
    assert "Value 0 smaller than min of 1" in by_job["fox-3"]["error"] and by_job["fox-3"]["files"] == []
    assert "RuntimeError: boom" in by_job["fox-6"]["error"]
    for i in set(range(10)) - {3, 6}:
        record = by_job[f"fox-{i}"]
        assert record["error"] is None and record["files"] == [f"fox-{i}.png"] and record["seed"] == 100 + i
        assert json.loads((out / f"fox-{i}.png").read_text()) == [f"fox {i}", 100 + i]  # its own image
    delivered = healthy.delivered + other.delivered + dying.delivered
    assert sorted(delivered) == sorted(f"fox {i}" for i in set(range(10)) - {3, 6})  # none run twice to the end
    assert len(dying.accepted) == 2 and dying.accepted[-1] not in dying.delivered  # it died with this job
    job_of = {job["prompt"]: job["name"] for job in ten_jobs()}
    assert by_job[job_of[dying.accepted[-1]]]["server"] in (healthy.url, other.url)  # run (or failed) elsewhere
    assert sorted(r["job"] for r in lines if r["server"] == dying.url and r["error"] is None) == sorted(
        job_of[text] for text in dying.delivered)
    assert healthy.delivered and other.delivered
    assert f"{dying.url} stopped answering" in err
    assert "job fox-3 failed: ComfyUI rejected the workflow" in err
    assert "8/10 done, 2 failed, 0 remaining" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"fox-{i}.png" for i in set(range(10)) - {3, 6}] + ["manifest.jsonl"])

    # resume: only the two failed jobs run again (fixed now); a deleted image is made again
    (out / "fox-0.png").unlink()
    fixed = ten_jobs(bad_steps=5)
    fixed[6]["prompt"] = "calm 6"
    write_jobs(batch, fixed)
    rerun = servers()
    assert kq.main([T2I, "--batch", str(batch), "--output", str(out), "--server", rerun.url]) == 0
    assert sorted(rerun.accepted) == ["calm 6", "fox 0", "fox 3"]
    assert "3 of 10 jobs to run" in capsys.readouterr().err
    assert all((out / f"fox-{i}.png").is_file() for i in range(10))
    assert kq.main([T2I, "--batch", str(batch), "--output", str(out), "--server", rerun.url]) == 0
    assert len(rerun.accepted) == 3  # all done: nothing queued


def test_no_server_left_exits_1_and_the_rest_resumes(servers, tmp_path, capsys):
    dying = servers(die_after=3)
    batch = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"owl {i}"} for i in range(5)])
    out = tmp_path / "out"
    assert kq.main([T2I, "--batch", str(batch), "--output", str(out), "--server", dying.url]) == 1
    assert "no server left; 3 job(s) not run: job-0003, job-0004, job-0005" in capsys.readouterr().err
    assert [r["job"] for r in manifest_lines(out)] == ["job-0001", "job-0002"]
    later = servers()
    assert kq.main([T2I, "--batch", str(batch), "--output", str(out), "--server", later.url]) == 0
    assert later.accepted == ["owl 2", "owl 3", "owl 4"]


def test_bad_batch_lines_are_usage_errors_before_queueing(servers, tmp_path, capsys):
    server = servers()
    out = tmp_path / "out"
    for line, message in [
        ('{"prompt": "x", "Decoder: sample latent.stepz": 3}', "jobs.jsonl:2: key 'Decoder: sample latent.stepz': "),
        ('{"prompt": "x", "colour": "red"}', "jobs.jsonl:2: unknown key(s) 'colour'"),
        ('{"prompt": "x", "size": "100x7"}', "multiples of 8"),
        ('{"name": "a"}', "job names must be unique; repeated: a"),
        ("not json", "jobs.jsonl:2: not valid JSON"),
        ('{"images": ["missing.png"]}', "the workflow has no LoadImage"),
    ]:
        batch = tmp_path / "jobs.jsonl"
        batch.write_text('{"name": "a", "prompt": "ok"}\n' + line + "\n")
        assert kq.main([T2I, "--batch", str(batch), "--output", str(out), "--server", server.url]) == 2, line
        assert message in capsys.readouterr().err, line
    assert server.accepted == []
    assert kq.main([T2I, "--server", server.url, "--server", server.url]) == 2
    assert "--server repeats only with --batch" in capsys.readouterr().err


def test_images_are_relative_to_the_batch_file_and_uploaded_once_per_server(servers, tmp_path):
    server = servers()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "frog.png").write_bytes(b"png")
    batch = write_jobs(tmp_path / "in" / "jobs.jsonl", [{"prompt": "a", "images": ["frog.png"]},
                                                         {"prompt": "b", "images": ["Input image=frog.png"]}])
    workflow = WORKFLOWS / "api" / "kandinsky-2-2-image-to-image.json"
    jobs = batch_jobs.read_jobs(batch, kq.load_workflow(workflow), kq.build_parser().parse_args([str(workflow)]))
    assert [path for job in jobs for _, path in job.images] == [tmp_path / "in" / "frog.png"] * 2


def test_ctrl_c_stops_queuing_and_leaves_a_resumable_manifest(servers, tmp_path):
    server = servers(run_s=0.4)
    batch = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"cat {i}"} for i in range(8)])
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), T2I, "--batch", str(batch), "--output", str(out), "--server", server.url]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ((out / "manifest.jsonl").is_file() and len(manifest_lines(out)) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - stopped < 2  # waits for nothing (a job takes 0.4 s)
    assert "interrupted" in err and "Traceback" not in err
    done = [r["job"] for r in manifest_lines(out)]
    assert 2 <= len(done) < 8
    queued_before = len(server.accepted)
    assert queued_before <= len(done) + 1  # nothing queued after Ctrl-C
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    assert sorted(r["job"] for r in manifest_lines(out)) == [f"job-{i:04d}" for i in range(1, 9)]
    assert len(server.accepted) - queued_before == 8 - len(done)
    assert os.path.isfile(out / "job-0008.png")


# --- two real ComfyUI servers, one killed midway ---------------------------------------------------

@pytest.mark.comfyui
@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: the real-host batch test needs a ComfyUI")
def test_real_two_servers_one_killed_midway_all_images_arrive(tmp_path):
    first, second = (ComfyServer(Path(COMFYUI_PATH).resolve(), tmp_path / name) for name in ("a", "b"))
    try:
        for server in (first, second):
            server.start()
        jobs = [{"name": f"img-{i}", "prompt": f"a red cat {i}", "seed": i, "size": "64x64",
                 "Prior: text to embeds.steps": 2, f"{SAMPLER}.steps": 2} for i in range(10)]
        batch = write_jobs(tmp_path / "jobs.jsonl", jobs)
        out = tmp_path / "out"
        command = [sys.executable, str(SCRIPT), T2I, "--batch", str(batch), "--output", str(out),
                   "--server", first.url, "--server", second.url, "--timeout", "300"]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (
                (out / "manifest.jsonl").is_file() and len(manifest_lines(out)) >= 3):
            time.sleep(0.1)
        second.process.kill()  # midway: the batch goes on on the first server
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        lines = manifest_lines(out)
        assert sorted(r["job"] for r in lines) == sorted(j["name"] for j in jobs) and all(r["error"] is None for r in lines)
        side = TINY_LATENT * 2  # a 64 px empty latent is TINY_LATENT; the tiny MoVQ scales by 2
        assert all(png_size((out / f"img-{i}.png").read_bytes()) == (side, side) for i in range(10))
        print(f"servers per job: {[r['server'][-5:] for r in lines]}; stderr:\n{err}")
    finally:
        first.stop()
        second.stop()
