"""Run the jobs of a `kandinsky_queue.py --batch` over one or more ComfyUI servers (standard library only).

Each server gets `per_server` worker threads; a worker takes the next job, queues it on its server, waits
for it, saves its images under deterministic names and appends the job's manifest line. Faults:
- a server that stops answering (refused, reset or timed out `retries` times in a row) is dropped and its
  in-flight jobs go back to the front of the queue for the other servers; a job is recorded only once,
  by the one worker that finished it, so it is never lost nor completed twice;
- a job the server rejects (validation) or fails while running is recorded with its error and the batch
  goes on;
- Ctrl-C stops queuing and returns at once: the manifest holds every finished job, so a rerun resumes.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import kandinsky_queue as kq
from kandinsky_batch_jobs import Job, Manifest, output_name, write_atomically


@dataclass
class Server:
    client: kq.ComfyClient
    alive: bool = True


class Progress:
    """One status line: a bar, jobs done / failed / remaining and an ETA (redrawn in place on a terminal)."""

    def __init__(self, total: int, skipped: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total, self.skipped, self.width = total, skipped, width
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.start = time.monotonic()
        self.tty = self.stream.isatty()

    def line(self) -> str:
        finished = self.done + self.failed
        remaining = self.total - self.skipped - finished
        filled = round(self.width * (self.skipped + finished) / max(self.total, 1))
        elapsed = time.monotonic() - self.start
        eta = "?" if not finished else duration(elapsed / finished * remaining)
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done + self.skipped}/{self.total} done, "
                f"{self.failed} failed, {remaining} remaining{skipped}, ETA {eta}")

    def show(self, note: str | None = None) -> None:
        if note:
            self.stream.write(("\r\x1b[K" if self.tty else "") + note + "\n")
        self.stream.write(("\r\x1b[K" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class BatchRunner:
    """Spreads jobs over servers with at most `per_server` in flight on each (see the module docstring)."""

    poll = 0.5  # seconds between /history polls
    retries, retry_delay = 3, 1.0  # a server is dropped after `retries` unanswered calls this far apart

    def __init__(self, jobs: list[Job], clients: list[kq.ComfyClient], manifest: Manifest, progress: Progress,
                 per_server: int = 1, timeout: float = 3600.0, previews: bool = False) -> None:
        self.pending = collections.deque(jobs)
        self.servers = [Server(client) for client in clients]
        self.manifest, self.progress = manifest, progress
        self.per_server, self.timeout, self.previews = per_server, timeout, previews
        self.in_flight = 0
        self.stopping = False
        self.changed = threading.Condition()
        self.uploads: dict[tuple[str, Path], str] = {}  # (server, file) -> name on that server

    # --- the scheduler ---------------------------------------------------------------------------------

    def run(self) -> list[Job]:
        """Run until every job is finished or no server is left; returns the jobs not run (servers gone)."""
        workers = [threading.Thread(target=self.work, args=(server,), daemon=True, name=f"{server.client.base}#{i}")
                   for server in self.servers for i in range(self.per_server)]
        for worker in workers:
            worker.start()
        try:
            while any(worker.is_alive() for worker in workers):
                for worker in workers:
                    worker.join(timeout=0.2)  # short joins keep the main thread responsive to Ctrl-C
        except KeyboardInterrupt:
            with self.changed:  # workers stop taking jobs; a torn last manifest line is ignored on resume
                self.stopping = True
                self.changed.notify_all()
            raise
        return list(self.pending)

    def take(self, server: Server) -> Job | None:
        """The next job for this server; waits while other servers' jobs may still come back."""
        with self.changed:
            while server.alive and not self.stopping:
                if self.pending:
                    self.in_flight += 1
                    return self.pending.popleft()
                if not self.in_flight:
                    return None
                self.changed.wait()
            return None

    def give_back(self, server: Server, job: Job) -> bool:
        """Drop the server and put its job first in line; True for the first of its workers to find out."""
        with self.changed:
            first, server.alive = server.alive, False
            self.pending.appendleft(job)
            self.in_flight -= 1
            self.changed.notify_all()
            return first

    def finish(self) -> None:
        with self.changed:
            self.in_flight -= 1
            self.changed.notify_all()

    def work(self, server: Server) -> None:
        while (job := self.take(server)) is not None:
            start = time.monotonic()
            try:
                files, error = self.run_job(server.client, job), None
            except kq.ServerUnreachable as exc:
                if self.give_back(server, job):
                    self.note(f"{server.client.base} stopped answering; its jobs move to the other servers ({exc})")
                return
            except kq.QueueError as exc:
                files, error = [], str(exc)
            if self.stopping:
                return
            self.manifest.add({"job": job.name, "server": server.client.base, "seed": job.seed, "files": files,
                               "seconds": round(time.monotonic() - start, 3), "error": error})
            with self.changed:
                if error:
                    self.progress.failed += 1
                else:
                    self.progress.done += 1
            self.note(f"job {job.name} failed: {error}" if error else None)
            self.finish()

    def note(self, text: str | None) -> None:
        with self.changed:
            self.progress.show(text)

    # --- one job on one server -------------------------------------------------------------------------

    def patient(self, call: Callable[[], object]):
        """call(), retried when the server does not answer; ServerUnreachable after `retries` failures."""
        for attempt in range(self.retries):
            try:
                return call()
            except kq.ServerUnreachable:
                if attempt == self.retries - 1 or self.stopping:
                    raise
                time.sleep(self.retry_delay)

    def run_job(self, client: kq.ComfyClient, job: Job) -> list[str]:
        """Queue the job, wait for it, save its images; returns their file names (QueueError on failure)."""
        workflow = {nid: dict(node, inputs=dict(node.get("inputs", {}))) for nid, node in job.workflow.items()}
        for nid, path in job.images:
            key = (client.base, path)
            if key not in self.uploads:
                self.uploads[key] = self.patient(lambda: client.upload_image(path))
            workflow[nid]["inputs"]["image"] = self.uploads[key]
        prompt_id = self.patient(lambda: kq.queue(client, workflow))
        deadline = time.monotonic() + self.timeout
        while (entry := self.patient(lambda: client.get_json(f"/history/{prompt_id}")).get(prompt_id)) is None:
            if time.monotonic() > deadline or self.stopping:
                raise kq.QueueError(f"prompt {prompt_id} did not finish within {self.timeout:g} s on {client.base}.")
            time.sleep(self.poll)
        failure = kq.run_failure(workflow, entry)
        if failure:
            raise kq.QueueError(failure)
        images = kq.output_images(entry, self.previews)
        if not images:
            raise kq.QueueError("the run finished but produced no output images (no SaveImage node?)")
        data = [self.patient(lambda image=image: client.view(image)) for image in images]
        names = [output_name(job.name, i, len(images), image["filename"]) for i, image in enumerate(images)]
        for name, content in zip(names, data):
            write_atomically(self.manifest.folder / name, content)
        return names


def run_batch(jobs: list[Job], servers: list[str], output: Path, per_server: int, timeout: float,
              previews: bool) -> int:
    """Run the batch into `output`, resuming from its manifest; exit status 0 only if every job succeeded."""
    output.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(output)
    completed = manifest.completed()
    todo = [job for job in jobs if job.name not in completed]
    progress = Progress(len(jobs), len(jobs) - len(todo))
    progress.show(f"{len(todo)} of {len(jobs)} jobs to run on {len(servers)} server(s), "
                  f"{per_server} at a time each; manifest {manifest.path}")
    runner = BatchRunner(todo, [kq.ComfyClient(s) for s in servers], manifest, progress, per_server, timeout,
                         previews)
    try:
        not_run = runner.run()
    except KeyboardInterrupt:
        progress.show("interrupted: finished jobs are in the manifest; run the same command again to resume")
        return 130
    progress.close()
    if not_run:
        print(f"error: no server left; {len(not_run)} job(s) not run: {', '.join(j.name for j in not_run)}. "
              "Run the same command again to resume.", file=sys.stderr)
    failed = progress.failed
    if failed:
        print(f"error: {failed} job(s) failed; see {manifest.path}", file=sys.stderr)
    return kq.EXIT_OK if not (failed or not_run) else kq.EXIT_FAILED
