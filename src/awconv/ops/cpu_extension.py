"""The compiled CPU kernel (``ops/csrc/aw_conv2d_cpu.cpp``): built at install, loaded when present.

``make install`` runs ``main`` (``python -c "from awconv.ops.cpu_extension import main; main()"``),
which compiles the source with the C++ compiler (``$CXX``, else ``c++``) for the CPU it runs on
(``-march=native``) into this package's folder, under a name that carries the torch version it
was built against; a wheel installed elsewhere can run the same to build it there. ``available``
loads it on first use and registers ``torch.ops.awconv_cpu.forward_chunk`` and ``backward_chunk``;
without it (a wheel installed without a build, another torch, ``AWCONV_CPU_KERNEL=0`` in the
environment) it is False and ``impl="cpp"`` and ``impl="auto"`` run the pure-PyTorch kernels.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
from pathlib import Path

import torch

__all__ = ["DISABLE_VARIABLE", "SOURCE", "available", "build", "compile_command", "library_path"]

SOURCE = Path(__file__).with_name("csrc") / "aw_conv2d_cpu.cpp"
# Set to 0 to run without the compiled kernel (the pure-PyTorch fallback), as where it is not built.
DISABLE_VARIABLE = "AWCONV_CPU_KERNEL"
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast"]


def library_path() -> Path:
    """Where the library for this torch version lives: ``ops/_aw_conv2d_cpu-<torch version>.so``."""
    version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    return Path(__file__).with_name(f"_aw_conv2d_cpu-{version}.so")


def compile_command(output: Path) -> list[str]:
    """The compiler's command line for ``SOURCE`` -> ``output``: the C++ compiler in ``$CXX`` (``c++``)
    with torch's headers, libraries and C++ ABI."""
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        os.environ.get("CXX", "c++"), *_FLAGS, "-std=c++20", "-shared", "-fPIC",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *(f"-I{path}" for path in cpp_extension.include_paths()),
        str(SOURCE), "-o", str(output),
        *(f"-L{path}" for path in cpp_extension.library_paths()), "-lc10", "-ltorch", "-ltorch_cpu",
    ]  # fmt: skip


def build(verbose: bool = False) -> Path:
    """Compiles ``SOURCE`` into ``library_path()`` (written whole, then renamed into place).

    Raises:
        RuntimeError: the compiler failed; its output is in the message.
    """
    target = library_path()
    partial = target.with_suffix(".so.partial")
    command = compile_command(partial)
    if verbose:
        print(" ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {SOURCE.name} failed ({command[0]}):\n{done.stderr}")
    os.replace(partial, target)
    return target


@functools.cache
def available() -> bool:
    """Whether the compiled kernel is loaded (loading it the first time)."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return False
    path = library_path()
    if not path.is_file():
        return False
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError):  # built for another torch or CPU
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=f"Compile {SOURCE.name} for this CPU and this torch.")
    parser.add_argument("--verbose", action="store_true", help="print the compiler's commands")
    print(f"awconv: built {build(parser.parse_args().verbose)}")


if __name__ == "__main__":
    main()
