#!/usr/bin/env bash
# Renders `make run`'s report.html in headless Chromium, saves a screenshot and fails on any error in the
# browser's console (issue 17). Installs Debian's `chromium` itself (as root); `make test` never needs it.
#
#   scripts/check_report_browser.sh                      # runs `make run`, then checks its report
#   scripts/check_report_browser.sh path/to/report.html  # checks an existing report
#   OUT=folder scripts/check_report_browser.sh           # where the screenshot and logs go (default: a temp folder)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d -t report-check.XXXXXX)}
mkdir -p "$OUT"

if [ $# -ge 1 ]; then
  REPORT=$1
else
  make run 2>&1 | tee "$OUT/make_run.log"
  REPORT=$(sed -n 's/^html: //p' "$OUT/make_run.log" | tail -1)
  echo "make run printed $(wc -l < "$OUT/make_run.log") lines (tables included)"
fi
[ -f "$REPORT" ] || { echo "error: no report at '$REPORT'" >&2; exit 2; }
URL=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$REPORT")

if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

FLAGS=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$(mktemp -d)"
       --enable-logging=stderr --v=0 --virtual-time-budget=5000)
# the page's script runs before the DOM is dumped: a thrown error shows in the console log
chromium "${FLAGS[@]}" --dump-dom "$URL" > "$OUT/dom.html" 2> "$OUT/console_dom.log"
chromium "${FLAGS[@]}" --window-size=1400,2200 --screenshot="$OUT/report.png" "$URL" 2> "$OUT/console_shot.log" >/dev/null
# Chromium logs every page console message (console.error too, at its INFO level) as
# `...:INFO:CONSOLE:line] "message", source: URL (line)`. The report's script logs nothing, so any message
# (an uncaught exception, a console.error, a resource that failed to load) fails the check.
grep -h ':CONSOLE' "$OUT"/console_*.log > "$OUT/console.txt" || true
messages=$(wc -l < "$OUT/console.txt")
echo "report:     $REPORT ($(du -k "$REPORT" | cut -f1) KiB)"
echo "screenshot: $OUT/report.png"
echo "console:    $messages message(s) ($OUT/console.txt)"
grep -q 'prompt-row' "$OUT/dom.html" || { echo "error: the rendered page has no response browser" >&2; exit 1; }
[ "$messages" -eq 0 ] || { cat "$OUT/console.txt" >&2; exit 1; }
