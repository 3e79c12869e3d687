#!/usr/bin/env python3
"""Queue an API-format workflow on a running ComfyUI server and save its output images.

    python scripts/kandinsky_queue.py workflows/api/kandinsky-2-2-text-to-image.json \\
        --prompt "a red fox in the snow, oil painting" --seed 42 --size 768x512 --output out/

Overrides change the workflow before it is queued: --prompt / --negative-prompt set every `prompt` /
`negative_prompt` input, --seed every `seed` input, --size the width and height of every node that has
both (EmptyLatentImage), --image uploads a file through the server's /upload/image and selects it in a
LoadImage / LoadImageMask node, --set changes any input of one node. The command waits for the run
(polling /history), downloads the images of the output nodes through /view into --output, and exits 1
with the server's error for the failing node when the server rejects the workflow (validation) or a node
fails while running. --batch FILE runs many jobs over one or more servers (kandinsky_batch_jobs.py,
kandinsky_batch_runner.py beside this file). Standard library only; see docs/HEADLESS.md.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

IMAGE_LOADERS = ("LoadImage", "LoadImageMask")  # nodes whose `image` input names a file in input/
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8188"


class QueueError(Exception):
    """A failure to report to the user (the message is printed as is) and exit with EXIT_FAILED."""


class ServerUnreachable(QueueError):
    """The server did not answer (refused, reset or timed out): a batch moves the job to another server."""


class UsageError(Exception):
    """A bad command line or workflow file (exit with EXIT_USAGE)."""


# --- the workflow -------------------------------------------------------------------------------------

def load_workflow(path: Path) -> dict:
    """Read an API-format workflow ({node_id: {class_type, inputs}}); a clear error for the UI format."""
    try:
        workflow = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot read the workflow {path}: {exc}") from exc
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise UsageError(
            f"{path} is a UI-format workflow (the editor's save format). Queue its API-format twin "
            "(workflows/api/<same name>), or export one from the editor with Workflow > Export (API)."
        )
    if not isinstance(workflow, dict) or not workflow or not all(
        isinstance(node, dict) and "class_type" in node for node in workflow.values()
    ):
        raise UsageError(f"{path} is not an API-format workflow: expected {{node_id: {{class_type, inputs}}}}.")
    return workflow


def node_label(workflow: dict, node_id: str) -> str:
    node = workflow.get(node_id, {})
    title = node.get("_meta", {}).get("title")
    kind = node.get("class_type", "?")
    return f'node {node_id} ({kind}{", " + repr(title) if title and title != kind else ""})'


def node_ids(workflow: dict, ref: str) -> list[str]:
    """The nodes a reference names: the node with that id, else the nodes with that title (any case)."""
    if ref in workflow:
        return [ref]
    return [nid for nid, node in workflow.items() if node.get("_meta", {}).get("title", "").lower() == ref.lower()]


def find_node(workflow: dict, ref: str) -> str:
    """A node id from an id or a node title (`_meta.title`, case-insensitive)."""
    matches = node_ids(workflow, ref)
    if len(matches) != 1:
        what = "no node" if not matches else f"several nodes ({', '.join(matches)})"
        raise UsageError(f"{what} with id or title {ref!r} in the workflow.")
    return matches[0]


def split_at_node(workflow: dict, text: str, sep: str) -> tuple[str, str] | None:
    """Split `text` at the first `sep` whose left part names a node (titles may contain `sep` themselves)."""
    start = 0
    while (index := text.find(sep, start)) != -1:
        if node_ids(workflow, text[:index]):
            return text[:index], text[index + len(sep):]
        start = index + 1
    return None


def set_everywhere(workflow: dict, name: str, value, need_value: bool = True) -> list[str]:
    """Set input `name` on every node that has it as a value (not a link); returns the node ids."""
    changed = []
    for nid, node in workflow.items():
        inputs = node.setdefault("inputs", {})
        if name in inputs and not (need_value and isinstance(inputs[name], list)):
            inputs[name] = value
            changed.append(nid)
    return changed


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 768x512 (width x height), got {text!r}") from None
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise argparse.ArgumentTypeError(f"width and height must be positive multiples of 8, got {text!r}")
    return width, height


def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, true, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_input_name(workflow: dict, nid: str, name: str, what: str, known: set[str] | None) -> None:
    """Refuse a --set input the node does not have (a typo would otherwise queue the default silently).

    `known` are the node type's inputs as the server lists them (None when it cannot tell); the inputs the
    workflow already gives the node count too."""
    names = set(workflow[nid].get("inputs", {})) | (known or set())
    if name not in names:
        raise UsageError(f"{what}: {node_label(workflow, nid)} has no input {name!r}; its inputs are: "
                         f"{', '.join(sorted(names)) or '(none)'}.")


def apply_overrides(workflow: dict, args: argparse.Namespace,
                    input_names: Callable[[str], set[str] | None] | None = None) -> None:
    """Apply the text, seed, size and --set overrides in place (images are handled by image_targets).

    `input_names(class_type)` gives a node type's input names (the server's /object_info) for checking
    --set names; without it only the inputs present in the workflow are known."""
    for name, value in (("prompt", args.prompt), ("negative_prompt", args.negative_prompt), ("seed", args.seed)):
        if value is not None and not set_everywhere(workflow, name, value):
            raise UsageError(f"--{name.replace('_', '-')} given, but no node of the workflow has a {name} input.")
    if args.size is not None:
        sized = [nid for nid, node in workflow.items()
                 if {"width", "height"} <= set(node.get("inputs", {}))
                 and not any(isinstance(node["inputs"][k], list) for k in ("width", "height"))]
        if not sized:
            raise UsageError("--size given, but no node of the workflow has width and height inputs "
                             "(image-to-image workflows take their size from the input image).")
        for nid in sized:
            workflow[nid]["inputs"]["width"], workflow[nid]["inputs"]["height"] = args.size
    for item in args.set or []:
        split = split_at_node(workflow, item, ".")
        name, sep, value = split[1].partition("=") if split else ("", "", "")
        if not split or not sep or not name:
            ref = item.partition("=")[0].rpartition(".")[0]
            if "=" in item and ref and not split:
                find_node(workflow, ref)  # raises: no node (or several) with that id or title
            raise UsageError(f"--set expects NODE.INPUT=VALUE (NODE = id or title), got {item!r}.")
        set_node_input(workflow, split[0], name, parse_value(value), input_names, f"--set {item!r}")


def set_node_input(workflow: dict, ref: str, name: str, value, input_names: Callable[[str], set[str] | None] | None,
                   what: str) -> None:
    """Set input `name` of the node `ref` (id or title), refusing a name the node does not have."""
    nid = find_node(workflow, ref)
    known = input_names(workflow[nid]["class_type"]) if input_names else None
    check_input_name(workflow, nid, name, what, known)
    workflow[nid].setdefault("inputs", {})[name] = value


def image_targets(workflow: dict, specs: list[str]) -> list[tuple[str, Path]]:
    """(node id, file) per --image: `NODE=PATH` targets a node; bare paths fill the image loaders in id order."""
    loaders = sorted((nid for nid, node in workflow.items() if node.get("class_type") in IMAGE_LOADERS),
                     key=lambda nid: (len(nid), nid))
    targets, used = [], set()
    kinds = " / ".join(IMAGE_LOADERS)
    for spec in specs:
        split = None if Path(spec).is_file() else split_at_node(workflow, spec, "=")
        if split:
            nid, path = find_node(workflow, split[0]), split[1]
            if workflow[nid].get("class_type") not in IMAGE_LOADERS:
                raise UsageError(f"--image {spec!r}: {node_label(workflow, nid)} is not a {kinds} node.")
        else:
            path = spec
            free = [nid for nid in loaders if nid not in used]
            if not loaders:
                raise UsageError(f"--image {spec!r}: the workflow has no {kinds} node to put an image in.")
            if not free:
                raise UsageError(f"--image {spec!r}: all {len(loaders)} image loader nodes already got an image; "
                                 "name the node as NODE=PATH.")
            nid = free[0]
        if not Path(path).is_file():
            raise UsageError(f"--image {spec!r}: no such file {path!r}.")
        used.add(nid)
        targets.append((nid, Path(path)))
    return targets


# --- the server ---------------------------------------------------------------------------------------

class ComfyClient:
    """The few ComfyUI HTTP endpoints the command needs."""

    def __init__(self, server: str, timeout: float = 60.0) -> None:
        self.base = server.rstrip("/")
        self.timeout = timeout
        self._inputs: dict[str, set[str] | None] = {}  # input names per node type (input_names)

    def _open(self, request: urllib.request.Request | str):
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            raise ServerUnreachable(f"Cannot reach the ComfyUI server at {self.base}: {exc}. Is it running "
                             "(python main.py --listen ...) and is --server right?") from exc

    def get_json(self, path: str):
        try:
            with self._open(self.base + path) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise QueueError(f"GET {path} failed: HTTP {exc.code}") from exc

    def post_json(self, path: str, payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.base + path, data=json.dumps(payload).encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with self._open(request) as response:
                body = response.read()
                return response.status, json.loads(body) if body.strip() else {}
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                raise QueueError(f"The server answered {path} with HTTP {exc.code}: "
                                 f"{body.decode('utf-8', 'replace')[:500]}") from exc

    def input_names(self, class_type: str) -> set[str] | None:
        """The inputs (required, optional) of a node type from GET /object_info/{class}; None if unknown."""
        if class_type not in self._inputs:
            try:
                info = self.get_json(f"/object_info/{urllib.parse.quote(class_type)}").get(class_type) or {}
                sections = info.get("input", {})
                self._inputs[class_type] = {n for key in ("required", "optional") for n in sections.get(key, {})}
            except (QueueError, ValueError, AttributeError):
                self._inputs[class_type] = None
        return self._inputs[class_type]

    def upload_image(self, path: Path) -> str:
        """POST /upload/image (multipart); returns the name a LoadImage node selects."""
        boundary = uuid.uuid4().hex
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        fields = [("overwrite", "true"), ("type", "input")]
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                     f"Content-Type: {mime}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        request = urllib.request.Request(self.base + "/upload/image", data=b"".join(parts), method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with self._open(request) as response:
                info = json.load(response)
        except urllib.error.HTTPError as exc:
            raise QueueError(f"Uploading {path} failed: HTTP {exc.code} {exc.read()[:300]!r}") from exc
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        try:
            with self._open(f"{self.base}/view?{query}") as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise QueueError(f"Downloading {image.get('filename')} failed: HTTP {exc.code}") from exc


def validation_message(workflow: dict, answer: dict) -> str:
    """The server's POST /prompt 400 answer as text: the general error, then each failing node's errors."""
    error = answer.get("error") or {}
    lines = [f"ComfyUI rejected the workflow: {error.get('message', 'invalid prompt')}"]
    for nid, info in (answer.get("node_errors") or {}).items():
        for reason in info.get("errors", []):
            details = f": {reason['details']}" if reason.get("details") else ""
            lines.append(f"  {node_label(workflow, nid)}: {reason.get('message', '?')}{details}")
    if len(lines) == 1 and error.get("details"):
        lines.append(f"  {error['details']}")
    return "\n".join(lines)


def run_failure(workflow: dict, entry: dict) -> str | None:
    """The failure reported in a /history entry (execution_error / execution_interrupted), or None."""
    status = entry.get("status") or {}
    for event, data in status.get("messages", []):
        if event == "execution_error":
            nid = str(data.get("node_id"))
            return (f"ComfyUI failed while running {node_label(workflow, nid)}: "
                    f"{data.get('exception_type', 'Error')}: {data.get('exception_message', '').strip()}")
        if event == "execution_interrupted":
            return f"The run was interrupted (at {node_label(workflow, str(data.get('node_id')))})."
    if status.get("status_str") == "error":
        return "ComfyUI reports the run as failed (no error message in the history)."
    return None


def queue(client: ComfyClient, workflow: dict) -> str:
    status, answer = client.post_json("/prompt", {"prompt": workflow, "client_id": uuid.uuid4().hex})
    if status != 200 or "prompt_id" not in answer:
        if "error" in answer or "node_errors" in answer:
            raise QueueError(validation_message(workflow, answer))
        raise QueueError(f"Unexpected answer to POST /prompt (HTTP {status}): {answer}")
    return answer["prompt_id"]


def wait(client: ComfyClient, prompt_id: str, timeout: float, poll: float = 0.5) -> dict:
    """Poll /history/{prompt_id} until the run is finished (done or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        entry = client.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry is not None:  # the server records a prompt in its history once it has finished or failed
            return entry
        if time.monotonic() > deadline:
            raise QueueError(f"Prompt {prompt_id} did not finish within {timeout:g} s (it may still be queued or "
                             "running on the server; see its queue).")
        time.sleep(poll)


def save_outputs(client: ComfyClient, entry: dict, folder: Path, previews: bool) -> list[Path]:
    """Download the images of the output nodes (SaveImage; PreviewImage too with `previews`)."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for image in output_images(entry, previews):
        target = folder / Path(image["filename"]).name
        target.write_bytes(client.view(image))
        saved.append(target)
    return saved


def output_images(entry: dict, previews: bool) -> list[dict]:
    """The images of the output nodes in node id order (SaveImage; PreviewImage too with `previews`)."""
    return [image for nid in sorted(entry.get("outputs", {}), key=lambda n: (len(n), n))
            for image in entry["outputs"][nid].get("images", []) if image.get("type") == "output" or previews]


# --- the command --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Queue an API-format workflow on a running ComfyUI, wait, and save the output images.")
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON (e.g. workflows/api/*.json)")
    parser.add_argument("--server", action="append", default=[], metavar="URL",
                        help=f"ComfyUI address (default {DEFAULT_SERVER}); with --batch it may repeat")
    parser.add_argument("--prompt", help="text for every `prompt` input")
    parser.add_argument("--negative-prompt", help="text for every `negative_prompt` input ('' = none)")
    parser.add_argument("--seed", type=int, help="value for every `seed` input")
    parser.add_argument("--size", type=parse_size, metavar="WxH", help="width x height of the empty latent, e.g. 768x512")
    parser.add_argument("--image", action="append", default=[], metavar="[NODE=]PATH",
                        help="upload PATH and select it in a LoadImage node (NODE = id or title; bare paths fill "
                             "the image loaders in node id order); repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="set any input of one node (NODE = id or title; VALUE parsed as JSON if it can be); repeatable")
    parser.add_argument("--output", type=Path, default=Path("output"), help="folder for the images (default %(default)s)")
    parser.add_argument("--previews", action="store_true", help="also save PreviewImage (temporary) images")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default %(default)s)")
    parser.add_argument("--batch", type=Path, metavar="FILE",
                        help="run every job of a JSON-lines file (see docs/HEADLESS.md) over all --server, saving "
                             "JOB.png and manifest.jsonl into --output; a rerun skips the jobs already done")
    parser.add_argument("--per-server", type=int, default=1, metavar="N",
                        help="with --batch: jobs in flight on each server at once (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    servers = args.server or [DEFAULT_SERVER]
    try:
        if args.batch is not None:
            return run_batch(args, servers)
        if len(servers) > 1:
            raise UsageError("--server repeats only with --batch (one workflow runs on one server).")
        workflow = load_workflow(args.workflow)
        client = ComfyClient(servers[0])
        apply_overrides(workflow, args, client.input_names)
        targets = image_targets(workflow, args.image)
        for nid, path in targets:
            workflow[nid].setdefault("inputs", {})["image"] = client.upload_image(path)
        prompt_id = queue(client, workflow)
        print(f"queued prompt {prompt_id} on {client.base}", file=sys.stderr)
        entry = wait(client, prompt_id, args.timeout)
        failure = run_failure(workflow, entry)
        if failure:
            raise QueueError(failure)
        saved = save_outputs(client, entry, args.output, args.previews)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for path in saved:
        print(path)
    if not saved:
        print("the run finished but produced no output images (does the workflow have a SaveImage node?)",
              file=sys.stderr)
    return EXIT_OK


def run_batch(args: argparse.Namespace, servers: list[str]) -> int:
    """--batch: every job of the file over all servers (kandinsky_batch_jobs / kandinsky_batch_runner)."""
    sys.modules.setdefault("kandinsky_queue", sys.modules[__name__])  # one copy of this module, also as __main__
    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    from kandinsky_batch_jobs import read_jobs
    from kandinsky_batch_runner import run_batch as run_jobs

    if args.per_server < 1:
        raise UsageError(f"--per-server must be at least 1, got {args.per_server}.")
    workflow = load_workflow(args.workflow)
    jobs = read_jobs(args.batch, workflow, args, ComfyClient(servers[0]).input_names)
    return run_jobs(jobs, servers, args.output, args.per_server, args.timeout, args.previews)


if __name__ == "__main__":
    sys.exit(main())
