# source me: this worktree's code first on the path, main's virtual environment for tools
export PYTHONPATH=/work/seam-store
export PATH=/work/main/.venv/bin:$PATH
export LOK_CLI_PREFIX=$HOME/.cache/lok-clis
