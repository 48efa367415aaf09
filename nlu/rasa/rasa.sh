#!/usr/bin/env bash
# Rasa 3.6 beside Guichet, trained on the same NLU files, reached over HTTP at /model/parse.
#
#   nlu/rasa/rasa.sh setup            create Rasa's environment (Python 3.10), once, outside the clone
#   nlu/rasa/rasa.sh train [CONFIG]   write Rasa's config.yml and train an NLU model on CONFIG/nlu
#                                     (default: the repository's config/); skipped when that data was
#                                     already trained (the model is named after a hash of the data)
#   nlu/rasa/rasa.sh serve [PORT]     run `rasa run --enable-api` on 127.0.0.1:PORT (default 5005)
#                                     with the newest model; then GUICHET_RASA_URL=http://127.0.0.1:5005
#
# Where things live (reused across clones and CI runs):
#   GUICHET_RASA_HOME   default ~/.cache/guichet/rasa-3.6   (the virtual environment, 2.7 GB)
#   GUICHET_RASA_WORK   default ~/.cache/guichet/rasa-work  (config.yml, models/)
# Which pipeline `train` uses:
#   GUICHET_RASA_PIPELINE=diet (default)  nlu/rasa/config.yml: Rasa's DIET, 20 to 40 minutes for the sample
#   GUICHET_RASA_PIPELINE=fast            nlu/rasa/config-fast.yml: Rasa's LogisticRegressionClassifier,
#                                         about a minute for the sample
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rasa_home=${GUICHET_RASA_HOME:-$HOME/.cache/guichet/rasa-3.6}
work=${GUICHET_RASA_WORK:-$HOME/.cache/guichet/rasa-work}
rasa_version=3.6.21

find_python310() {
  for candidate in "${GUICHET_PYTHON310:-}" python3.10 /root/.pyenv/versions/3.10.13/bin/python \
                   "$HOME/.pyenv/versions/3.10.13/bin/python"; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Rasa $rasa_version needs Python 3.10 (set GUICHET_PYTHON310 to its path, or install python3.10)" >&2
  return 1
}

setup() {
  if [ -x "$rasa_home/bin/rasa" ] && "$rasa_home/bin/python" -c "import rasa, sys; sys.exit(rasa.__version__ != '$rasa_version')" 2>/dev/null; then
    echo "Rasa $rasa_version is ready in $rasa_home"
    return 0
  fi
  python310=$(find_python310)
  echo "Creating Rasa's environment in $rasa_home (about 2 minutes and 2.7 GB)…"
  "$python310" -m venv "$rasa_home"
  "$rasa_home/bin/pip" install --quiet --disable-pip-version-check "rasa==$rasa_version"
  echo "Rasa $rasa_version is ready in $rasa_home"
}

train() {
  config_dir=$(cd "${1:-$repo/config}" && pwd)
  [ -d "$config_dir/nlu" ] || { echo "no nlu/ folder in $config_dir" >&2; exit 2; }
  # Checked before setup: a mistyped pipeline is refused at once, not after installing Rasa.
  case "${GUICHET_RASA_PIPELINE:-diet}" in
    diet) pipeline="$here/config.yml"; takes="20 to 40 minutes" ;;
    fast) pipeline="$here/config-fast.yml"; takes="about a minute" ;;
    *) echo "GUICHET_RASA_PIPELINE must be diet or fast, not '${GUICHET_RASA_PIPELINE}'" >&2; exit 2 ;;
  esac
  setup >/dev/null
  mkdir -p "$work/models"
  cp "$pipeline" "$work/config.yml"
  # The model's name says what it was trained on: same data, same model, no retraining.
  hash=$(cat "$work/config.yml" "$config_dir"/nlu/*.y*ml | sha256sum | cut -c1-16)
  model="$work/models/nlu-$hash.tar.gz"
  if [ -f "$model" ]; then
    echo "Rasa model for this data is already trained: $model"
  else
    echo "Training Rasa NLU on $config_dir/nlu with $(basename "$pipeline") (the sample's 2,500 examples: $takes on 2 cores)…"
    started=$(date +%s)
    (cd "$work" && "$rasa_home/bin/rasa" train nlu --nlu "$config_dir/nlu" --config "$work/config.yml" \
        --out "$work/models" --fixed-model-name "nlu-$hash" --quiet)
    # Kept beside the model, as bench/rasa_models.py does: the benchmark prints Rasa's training time.
    printf '{"seconds": %s, "load_average": %s, "cores": %s}\n' "$(($(date +%s) - started))" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$(nproc)" > "$work/models/nlu-$hash.json"
  fi
  ln -sf "$model" "$work/models/current.tar.gz"
  echo "$model"
}

serve() {
  port=${1:-5005}
  model="$work/models/current.tar.gz"
  [ -e "$model" ] || { echo "no trained model: run $0 train first" >&2; exit 2; }
  cd "$work"
  exec "$rasa_home/bin/rasa" run --enable-api -i 127.0.0.1 -p "$port" -m "$(readlink -f "$model")" --quiet
}

case "${1:-}" in
  setup) setup ;;
  train) shift; train "$@" ;;
  serve) shift; serve "$@" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
