import subprocess

from ardistill.cli import build_parser


def test_parser_builds_and_lists_commands():
    parser = build_parser()
    text = parser.format_help()
    assert "bench" in text


def test_module_entry_point_runs(python_exe, cli_env):
    r = subprocess.run([python_exe, "-m", "ardistill", "--version"], env=cli_env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ardistill ")
