import subprocess
import sys


def test_import_inferopt_loads_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, inferopt, inferopt.cli, inferopt.artifact, inferopt.engine, inferopt.config;"
        "heavy = [m for m in ('torch', 'onnxruntime', 'fastapi', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
