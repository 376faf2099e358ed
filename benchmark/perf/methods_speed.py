"""Forward+backward time of every PEFT method on SAM ViT-B-sized layers, as a ratio to frozen.

    python -m benchmark.perf.methods_speed [--batch 5 --tokens 1024 --repeats 5 --device cpu]

The four weight shapes of one SAM ViT-B block (qkv 768 -> 2304, proj 768 -> 768, MLP 768 <-> 3072)
run on batch x tokens inputs that require grad, as inside a network, so even frozen layers
back-propagate to their input. Every (method, layer) step is timed in the same run, round-robin
over repeats so that load from other processes spreads over all methods; the fastest repeat is
kept, the one least disturbed by them. The process runs under the allocator settings that
`saltbench cell` uses, so freed activations are not page-faulted back on every step.
"salt direct" is SALT with eq. 4 rebuilt literally each step, U ReLU(Sigma') V^T with a dense
r_max x r_max Sigma', as the official code does; its outputs are checked against ours first.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from torch import Tensor, nn

import methods
from benchmark.allocator import reexec_with_allocator_settings
from benchmark.perf.literal_salt import DirectSALTLayer
from benchmark.perf.timing import cpu_name, synchronise

LAYERS = {"attn.qkv": (768, 2304), "attn.proj": (768, 768), "mlp.fc1": (768, 3072), "mlp.fc2": (3072, 768)}
COMPONENTS = {"attn.qkv": r"attn\.qkv", "attn.proj": r"attn\.proj", "mlp": r"mlp\.fc[12]"}
TARGETS = list(COMPONENTS)
METHODS: dict[str, dict] = {
    "frozen": {"name": "frozen"},
    "full": {"name": "full"},
    "svd": {"name": "svd", "targets": TARGETS},
    "lora r4": {"name": "lora", "rank": 4, "targets": TARGETS},
    "lora r256": {"name": "lora", "rank": 256, "targets": TARGETS},
    "dora r4": {"name": "dora", "rank": 4, "targets": TARGETS},
    "pissa r4": {"name": "pissa", "rank": 4, "targets": TARGETS},
    "salt r4": {"name": "salt", "rank": 4, "sv_rank": 0.5, "targets": TARGETS},
    "salt r256": {"name": "salt", "rank": 256, "sv_rank": 0.5, "targets": TARGETS},
}
DIRECT = {"salt direct r4": "salt r4", "salt direct r256": "salt r256"}


class Block(nn.Module):
    """The four Linear shapes of a SAM ViT-B block, named as the components above select them."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.mlp = nn.Module()
        for name, (in_dim, out_dim) in LAYERS.items():
            parent, _, child = name.partition(".")
            setattr(getattr(self, parent), child, nn.Linear(in_dim, out_dim))


def build(spec: dict, base: Block, direct: bool) -> Block:
    model = copy.deepcopy(base)
    methods.apply_method(model, spec, COMPONENTS)
    if direct:
        for layer in methods.adapted_layers(model).values():
            layer.__class__ = DirectSALTLayer  # same tensors, literal eq. 4 rebuild
    return model


def step(layer: nn.Module, x: Tensor, upstream: Tensor) -> float:
    """Seconds for one forward + backward (with the layer's regulariser, as training adds it)."""
    for parameter in layer.parameters():
        parameter.grad = None
    x.grad = None
    synchronise(x.device)
    began = time.perf_counter()
    out = layer(x)
    loss = (out * upstream).sum()
    if isinstance(layer, methods.AdaptedLayer):
        loss = loss + layer.regularization()
    loss.backward()
    synchronise(x.device)
    return time.perf_counter() - began


def check_direct_matches(models: dict[str, Block], inputs: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for direct, folded in DIRECT.items():
            for name, x in inputs.items():
                ours, literal = models[folded].get_submodule(name)(x), models[direct].get_submodule(name)(x)
                error = (ours - literal).abs().max().item() / literal.abs().max().item()
                if error > 1e-4:
                    raise AssertionError(f"{folded} and {direct} disagree on {name}: relative error {error:.2e}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    reexec_with_allocator_settings("benchmark.perf.methods_speed", argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per (method, layer), after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = Block()
    models = {}
    for label, spec in METHODS.items():
        torch.manual_seed(1)
        models[label] = build(spec, base, direct=False).to(device)
    for direct, folded in DIRECT.items():
        torch.manual_seed(1)
        models[direct] = build(METHODS[folded], base, direct=True).to(device)
    generator = torch.Generator().manual_seed(2)
    inputs = {name: torch.randn(args.batch, args.tokens, d_in, generator=generator).to(device).requires_grad_()
              for name, (d_in, _) in LAYERS.items()}
    upstream = {name: torch.randn(args.batch, args.tokens, d_out, generator=generator).to(device)
                for name, (_, d_out) in LAYERS.items()}
    check_direct_matches(models, inputs)

    times: dict[tuple[str, str], list[float]] = {(m, n): [] for m in models for n in LAYERS}
    for repeat in range(args.repeats + 1):
        for label, model in models.items():
            for name in LAYERS:
                seconds = step(model.get_submodule(name), inputs[name], upstream[name])
                if repeat:
                    times[label, name].append(seconds)
    fastest = {key: min(values) for key, values in times.items()}
    totals = {label: sum(fastest[label, name] for name in LAYERS) for label in models}

    where = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"input {args.batch} x {args.tokens} tokens; fastest of {args.repeats} forward+backward steps\n")
    header = " | ".join(f"{name} {d_in}->{d_out} ms" for name, (d_in, d_out) in LAYERS.items())
    print(f"| method | {header} | total ms | x frozen |")
    print("|---" * (len(LAYERS) + 3) + "|")
    for label in models:
        cells = " | ".join(f"{1000 * fastest[label, name]:.0f}" for name in LAYERS)
        print(f"| {label} | {cells} | {1000 * totals[label]:.0f} | {totals[label] / totals['frozen']:.2f} |")
    print()
    for direct, folded in DIRECT.items():
        print(f"{folded} / {direct}: {totals[folded] / totals[direct]:.2f}")


if __name__ == "__main__":
    main()
