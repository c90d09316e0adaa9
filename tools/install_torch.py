"""Install torch into the running interpreter's environment, CPU build by default.

Used by `make setup` and by asv's install_command, so neither pulls a multi-GB CUDA build onto a
CPU machine. Does nothing when torch is already importable (GPU users install theirs first).

  GRADBENCH_TORCH_SPEC   what to install (default: torch==2.13.0)
  GRADBENCH_TORCH_INDEX  the wheel index to prefer (default: PyTorch's CPU index); set it to a CUDA
                         index (https://download.pytorch.org/whl/cu126, say) on a GPU machine

The index is probed first: where it cannot be reached, pip is not sent to retry it for minutes;
the default index is used instead, with a note.
"""
import importlib.util
import os
import subprocess
import sys
import urllib.request

SPEC = os.environ.get("GRADBENCH_TORCH_SPEC", "torch==2.13.0")
INDEX = os.environ.get("GRADBENCH_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=8)
        return True
    except Exception:
        return False


def main() -> int:
    if importlib.util.find_spec("torch") is not None:
        return 0
    command = [sys.executable, "-m", "pip", "install", "--quiet", SPEC]
    if INDEX and reachable(INDEX):
        command += ["--extra-index-url", INDEX]
    else:
        print(f"install_torch: {INDEX} cannot be reached; installing {SPEC} from the default index", file=sys.stderr)
    print("install_torch: " + " ".join(command[2:]), file=sys.stderr)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
