"""Run the reference checker on several exports in one process that imports nothing but
TensorFlow (as the checker alone would), so its start-up is paid once:

    python tests/export/reference_checks.py CHECKER VERSION_DIR ...  ->  JSON {dir: [ok, output]}
"""
import contextlib
import io
import json
import runpy
import sys

checker = runpy.run_path(sys.argv[1], run_name="serving_load_check")  # its main() is not run on import
verdicts = {}
for version_dir in sys.argv[2:]:
    sys.argv = ["serving_load_check.py", version_dir]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = checker["main"]()
    verdicts[version_dir] = [status == 0, output.getvalue()]
print(json.dumps(verdicts))
