"""The node graphs the transformers-compatibility step compares (2.2 and 2.1 text to image, tiny models).

make_reference.py (the main venv: diffusers builds the tiny repos, transformers 5.x) writes the repos and
these graphs' outputs; test_compat.py (a second venv: transformers 4.57, no diffusers) runs the same
graphs on the same repos and compares. See .ci/run.
"""
from __future__ import annotations

import torch

from tiny_models.node_repos import call, node_inputs

REPOS = {  # folder under models/kandinsky -> (builder module, builder, extra argument)
    "kandinsky-2-2-prior": ("tiny_models.repos", "build_prior_repo", None),
    "kandinsky-2-2-decoder": ("tiny_models.repos", "build_decoder_repo", "decoder22"),
    "kandinsky-2-1-prior": ("tiny_models.repos21", "build_prior21_repo", None),
    "kandinsky-2-1": ("tiny_models.repos21", "build_decoder21_repo", "decoder21"),
}
GRAPHS = {"t2i-2.2": ("kandinsky-2-2-prior", "kandinsky-2-2-decoder"), "t2i-2.1": ("kandinsky-2-1-prior", "kandinsky-2-1")}
PROMPTS = (("a red cat, oil painting", ""), ("хорошая собака", "low quality"))


def run_graphs(nodes: dict) -> dict[str, torch.Tensor]:
    """name -> output: each graph's embeds and image for each prompt (loaders, prior, sampler, MoVQ)."""
    outputs = {}
    for graph, (prior_name, decoder_name) in GRAPHS.items():
        loader = nodes["KandinskyPriorLoader"]
        (prior,) = call(loader, **node_inputs(loader, {}, prior_name=prior_name, dtype="fp32"))
        decoders = nodes["KandinskyDecoderLoader"]
        unet, movq = call(decoders, **node_inputs(decoders, {}, decoder_name=decoder_name, dtype="fp32"))
        for index, (prompt, negative) in enumerate(PROMPTS):
            encode = nodes["KandinskyPriorEncode"]
            (embeds,) = call(encode, **node_inputs(encode, {"prior": prior}, prompt=prompt, negative_prompt=negative,
                                                   seed=index, steps=2))
            sampler = nodes["KandinskyUNetSampler"]
            (latent,) = call(sampler, **node_inputs(sampler, {"unet": unet, "embeds": embeds,
                                                              "latent": {"samples": torch.zeros(1, 4, 8, 8)}},
                                                    seed=index, steps=3))
            decode = nodes["KandinskyMoVQDecode"]
            (image,) = call(decode, **node_inputs(decode, {"movq": movq, "latent": latent}))
            outputs[f"{graph}/{index}/image_embeds"] = embeds.image_embeds
            outputs[f"{graph}/{index}/image"] = image
    return outputs
