#!/usr/bin/env bash
# Submit a sweep and walk away: the Hydra driver of `python -m mllm_shapx.app --multirun ...` blocks
# until every job has ended (hydra-submitit-launcher, upstream #2479), so it is itself started
# detached, and this script returns at once.
#
#   launchers/submit_sweep.sh [--local] [SBATCH OPTION ...] -- APP ARGUMENT ...
#
#   launchers/submit_sweep.sh --time=2-00:00:00 --partition=cpu -- \
#       +experiment=mc_minimal +launcher=slurm shap.num_samples=50,100
#   launchers/submit_sweep.sh --local -- +experiment=mc_minimal +launcher=local shap.num_samples=20,50
#
# With Slurm (sbatch on PATH, no --local) the driver runs as a small batch job (1 CPU; the SBATCH
# OPTIONs go to it: give it a --time at least as long as the whole sweep, the partition's default
# otherwise) that submits the sweep's job array and waits for it. Without Slurm, or with --local, the
# driver runs under setsid/nohup on this machine, immune to logging out.
# Either way the driver's log is <sweep dir>/driver-<job id or date>.log and, when the sweep ends,
# it ends with `python -m mllm_shapx.status <sweep dir>` (runs done/running/failed). Meanwhile:
#   python -m mllm_shapx.status <sweep dir>
# Stopping: scancel the driver job (or kill the PID printed) AND the sweep's array (squeue shows it);
# re-running the same command later resumes every run from its directory.
# Environment: PYTHON (default: `python` on PATH; the venv the sweep should use).
set -euo pipefail

local_mode=0
sbatch_opts=()
while (($#)); do
    case "$1" in
        --) shift; break ;;
        --local) local_mode=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) sbatch_opts+=("$1"); shift ;;
    esac
done
(($#)) || { echo "usage: $0 [--local] [SBATCH OPTION ...] -- APP ARGUMENT ..." >&2; exit 2; }
app_args=()
for a in "$@"; do [[ $a == --multirun || $a == -m ]] || app_args+=("$a"); done

python=$(command -v "${PYTHON:-python}") || { echo "error: ${PYTHON:-python} not found" >&2; exit 2; }

# The sweep dir the driver will use: the config composed with the non-sweep overrides.
sweep_dir=$("$python" - "${app_args[@]}" <<'PY'
import os, sys
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
import mllm_shapx.app  # noqa: F401  (the schema and resolvers)
from mllm_shapx.validate import CONF_DIR
parsed = OverridesParser.create().parse_overrides(sys.argv[1:])
plain = [o.input_line for o in parsed if not o.is_sweep_override()]
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose(config_name="config", overrides=plain, return_hydra_config=True)
print(os.path.abspath(str(cfg.hydra.sweep.dir)))
PY
) || { echo "error: the sweep's config does not compose (see above)" >&2; exit 2; }
mkdir -p "$sweep_dir"

# The driver script, kept in the sweep dir: the multirun, then the status view. The driver job's own
# Slurm variables are not passed on to the jobs it submits (srun would read e.g. SLURM_CPUS_PER_TASK).
stamp=$(date +%Y%m%d-%H%M%S)
script="$sweep_dir/driver-$stamp.sh"
# shellcheck disable=SC2016  # the $-expressions below belong to the driver script
{
    echo '#!/bin/bash'
    echo "# written by launchers/submit_sweep.sh at $(date '+%F %T')"
    echo 'for v in $(compgen -e | grep "^SLURM_" | grep -vx SLURM_CONF); do unset "$v"; done'
    printf 'cd %q\n' "$PWD"
    printf 'echo "driver on $(hostname) started $(date "+%%F %%T")"\n'
    printf '%q ' "$python" -m mllm_shapx.app --multirun "${app_args[@]}"; echo
    echo 'rc=$?'
    echo 'echo "driver: the sweep ended with exit code $rc at $(date "+%F %T")"'
    printf '%q ' "$python" -m mllm_shapx.status "$sweep_dir"; echo
    echo 'exit $rc'
} >"$script"
chmod +x "$script"
printf -v status_cmd '%q ' "$python" -m mllm_shapx.status "$sweep_dir"

if ((!local_mode)) && command -v sbatch >/dev/null; then
    job=$(sbatch --parsable --job-name=mllm_shapx-driver --ntasks=1 --cpus-per-task=1 --chdir="$PWD" \
        --output="$sweep_dir/driver-%j.log" "${sbatch_opts[@]}" "$script")
    job=${job%%;*}
    echo "submitted the sweep driver ($script) as Slurm job $job"
    echo "  log:    $sweep_dir/driver-$job.log"
else
    ((${#sbatch_opts[@]} == 0)) || echo "note: no Slurm here (or --local): ignoring ${sbatch_opts[*]}" >&2
    log="$sweep_dir/driver-$stamp.log"
    setsid nohup bash "$script" >"$log" 2>&1 </dev/null &
    echo "started the sweep driver ($script) in the background, pid $!"
    echo "  log:    $log"
fi
echo "  status: $status_cmd"
