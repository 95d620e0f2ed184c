#!/usr/bin/env bash
# Run a retail-ann job through Spark's own spark-submit, on any master.
#
#   ./spark-submit.sh <job> [job args]
#   ./spark-submit.sh <job> [spark-submit options] -- [job args]
#
# jobs: the files in jobs/ (generate, features, train, score, demo, ...).
# Master: $SPARK_MASTER (default local[*]). Extra spark-submit options: before a `--`, or in
# $SPARK_SUBMIT_OPTS_EXTRA (word-split; put it first, the `--` options after it); --packages and
# --exclude-packages given there add to the ones a job's paths need.
# Settings: conf/spark-defaults.conf (--properties-file), over the cluster's own
# $SPARK_CONF_DIR/spark-defaults.conf when there is one (--load-spark-defaults).
# spark-submit: $SPARK_HOME/bin/spark-submit, else the one inside the installed pyspark.
# Logs: Spark's at WARN in retail-ann's format (conf/log4j2.properties, client mode, unless you
# give --driver-java-options yourself), retail-ann's on stderr; the summary line on stdout.
#
# Shipping the code: the retail_ann package is zipped into build/ (rebuilt when a source is newer,
# see bin/build-package.sh) and sent with --py-files, so executors need no install of it.
#   RETAIL_ANN_PACKAGE=FILE   ship this .zip/.whl instead; RETAIL_ANN_PACKAGE=none ships nothing.
#   RETAIL_ANN_ENV_ARCHIVE=F  a packed environment (bin/build-package.sh --env, venv-pack style):
#                             sent with --archives F#environment, executors run
#                             ./environment/bin/python (for nodes without the dependencies).
#   RETAIL_ANN_JOBS_DIR=URI   where spark-submit finds jobs/<job>.py, e.g. local:///opt/retail-ann/jobs
#                             in a Kubernetes image (default: this checkout's jobs/).
# Python: driver $PYSPARK_DRIVER_PYTHON, else $PYSPARK_PYTHON, else .venv/bin/python, else python3;
# executors $PYSPARK_PYTHON, else ./environment/bin/python with an archive, else the driver's.
# In --deploy-mode cluster no local path is passed as a Python: set PYSPARK_PYTHON (and
# PYSPARK_DRIVER_PYTHON) to paths valid on the cluster, or use an archive.
#
# RETAIL_ANN_DRY_RUN=1 prints the spark-submit command (one word a line) instead of running it.
# The job's exit code comes through unchanged: 0 ok, 1 failure, 2 bad input (also: unknown job).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  echo "usage: $0 <job> [spark-submit options --] [job args]; jobs: $(cd "$here/jobs" && ls -- *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
}
[ $# -ge 1 ] || usage
job="$1"; shift
case "$job" in
  -h|--help)   # the comment block at the top of this file: usage, options, environment variables
    sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    echo "jobs: $(cd "$here/jobs" && ls -- *.py | sed 's/\.py$//' | tr '\n' ' ')"
    exit 0 ;;
esac
[[ "$job" =~ ^[A-Za-z0-9_-]+$ ]] && [ -f "$here/jobs/$job.py" ] || usage

# Options: $SPARK_SUBMIT_OPTS_EXTRA, then the ones before `--`. --py-files, --archives, --packages
# and --exclude-packages are collected (spark-submit keeps only the last of each) and merged with ours.
submit_args=()
if [[ " $* " == *" -- "* ]]; then
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do submit_args+=("$1"); shift; done
  shift
fi
# shellcheck disable=SC2206
extra=(${SPARK_SUBMIT_OPTS_EXTRA:-})
opts=() py_files=() archives=() packages=() excludes=() cluster_mode=0 own_java_options=0
set -- ${extra[@]+"${extra[@]}"} ${submit_args[@]+"${submit_args[@]}"} -- "$@"
while [ "$1" != "--" ]; do
  case "$1" in
    --py-files|--archives|--packages|--exclude-packages)
      [ "$2" != "--" ] || { echo "$1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --packages) packages+=("$2"); shift 2; continue ;;
    --packages=*) packages+=("${1#*=}"); shift; continue ;;
    --exclude-packages) excludes+=("$2"); shift 2; continue ;;
    --exclude-packages=*) excludes+=("${1#*=}"); shift; continue ;;
    --py-files) py_files+=("$2"); shift 2; continue ;;
    --py-files=*) py_files+=("${1#*=}"); shift; continue ;;
    --archives) archives+=("$2"); shift 2; continue ;;
    --archives=*) archives+=("${1#*=}"); shift; continue ;;
    --deploy-mode) [ "${2:-}" = cluster ] && cluster_mode=1 ;;
    --deploy-mode=cluster|spark.submit.deployMode=cluster) cluster_mode=1 ;;
    --driver-java-options|--driver-java-options=*|spark.driver.extraJavaOptions=*) own_java_options=1 ;;
  esac
  opts+=("$1"); shift
done
shift

if [ -z "${JAVA_HOME:-}" ] && command -v java >/dev/null; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  export JAVA_HOME
fi

archive="${RETAIL_ANN_ENV_ARCHIVE:-}"
if [ -n "$archive" ]; then
  [ -f "$archive" ] || [[ "$archive" == *://* ]] || { echo "RETAIL_ANN_ENV_ARCHIVE: no file $archive" >&2; exit 2; }
  archives=("$archive#environment" ${archives[@]+"${archives[@]}"})
fi

# The Python of this machine (builds the package, finds pyspark), the driver's and the executors'.
local_python="$here/.venv/bin/python"
[ -x "$local_python" ] || local_python="$(command -v python3 || true)"
driver_python="${PYSPARK_DRIVER_PYTHON:-}"
if [ -z "$driver_python" ] && [ -z "$archive" ]; then driver_python="${PYSPARK_PYTHON:-}"; fi
executor_python="${PYSPARK_PYTHON:-}"
if [ -z "$executor_python" ] && [ -n "$archive" ]; then executor_python="./environment/bin/python"; fi
py_conf=()
if [ "$cluster_mode" = 1 ]; then
  # The driver runs on the cluster too: only Pythons given explicitly, or the archive's.
  driver_python="${driver_python:-$executor_python}"
  if [ -n "$executor_python" ]; then py_conf+=(--conf "spark.pyspark.python=$executor_python"); fi
  if [ -n "$driver_python" ]; then py_conf+=(--conf "spark.pyspark.driver.python=$driver_python"); fi
else
  driver_python="${driver_python:-$local_python}"
  command -v "$driver_python" >/dev/null 2>&1 \
    || { echo "no Python at '$driver_python': run 'make venv' or set PYSPARK_DRIVER_PYTHON" >&2; exit 2; }
  executor_python="${executor_python:-$driver_python}"
  export PYSPARK_DRIVER_PYTHON="$driver_python" PYSPARK_PYTHON="$executor_python"
  py_conf+=(--conf "spark.pyspark.driver.python=$driver_python" --conf "spark.pyspark.python=$executor_python")
fi
[ -n "$local_python" ] || { echo "no python3 on PATH" >&2; exit 2; }

package="${RETAIL_ANN_PACKAGE:-}"
if [ -z "$package" ]; then
  package="$(PYTHON="$local_python" "$here/bin/build-package.sh" | tail -n 1)"
elif [ "$package" = none ]; then
  package=""
fi
[ -n "$package" ] && py_files=("$package" ${py_files[@]+"${py_files[@]}"})
# The JVM starts before the job does, so jars the job's paths and formats need come from here:
# hadoop-aws and Spark's cloud committers for an s3a:// path (leaving out their Azure and GCS
# dependencies), Delta for a Delta input or output (versions: retail_ann/spark.py).
job_args=" $* "
package_of() { sed -n "s/^$1 = \"\(.*\)\"/\1/p" "$here/retail_ann/spark.py"; }
if [[ "$job_args" == *"s3a://"* ]]; then
  packages+=("$(package_of S3A_PACKAGE)")
  excludes+=("$(package_of S3A_EXCLUDES)")
fi
[[ "$job_args" =~ -format[=\ ]delta\  ]] && packages+=("$(package_of DELTA_PACKAGE)")
ship=()
# Spark's own log as retail-ann runs it (conf/log4j2.properties: WARN, on stderr, one format); in
# client mode only (a cluster-mode driver has no such file), and not over the caller's own options.
if [ "$cluster_mode" = 0 ] && [ "$own_java_options" = 0 ] && [ -f "$here/conf/log4j2.properties" ]; then
  ship+=(--driver-java-options "-Dlog4j2.configurationFile=file:$here/conf/log4j2.properties")
fi
[ ${#packages[@]} -gt 0 ] && ship+=(--packages "$(IFS=,; echo "${packages[*]}")")
[ ${#excludes[@]} -gt 0 ] && ship+=(--exclude-packages "$(IFS=,; echo "${excludes[*]}")")
[ ${#py_files[@]} -gt 0 ] && ship+=(--py-files "$(IFS=,; echo "${py_files[*]}")")
[ ${#archives[@]} -gt 0 ] && ship+=(--archives "$(IFS=,; echo "${archives[*]}")")

if [ -n "${SPARK_HOME:-}" ]; then
  spark_submit="$SPARK_HOME/bin/spark-submit"
else
  spark_submit="$("$local_python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/bin/spark-submit"
fi

cmd=("$spark_submit"
  --master "${SPARK_MASTER:-local[*]}"
  --properties-file "$here/conf/spark-defaults.conf" --load-spark-defaults
  ${py_conf[@]+"${py_conf[@]}"} ${ship[@]+"${ship[@]}"}
  ${opts[@]+"${opts[@]}"}
  "${RETAIL_ANN_JOBS_DIR:-$here/jobs}/$job.py" "$@")
if [ -n "${RETAIL_ANN_DRY_RUN:-}" ]; then  # print the command, one word a line, and stop
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
