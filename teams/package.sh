#!/bin/sh
# Builds the Teams app package (a zip of manifest.json and the two icons)
# with the placeholders filled in:
#   APP_ID=<bot's Microsoft App ID> PUBLISHER="Example Ltd" \
#   WEBSITE_URL=https://example.com ./teams/package.sh
# and writes countersign-teams.zip in the current directory.
set -eu
: "${APP_ID:?set APP_ID to the bot's Microsoft App ID}"
PUBLISHER="${PUBLISHER:-Countersign}"
WEBSITE_URL="${WEBSITE_URL:-https://example.com}"
here="$(cd "$(dirname "$0")" && pwd)"
out="$(pwd)/countersign-teams.zip"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e "s|{{APP_ID}}|$APP_ID|g" -e "s|{{PUBLISHER}}|$PUBLISHER|g" -e "s|{{WEBSITE_URL}}|$WEBSITE_URL|g" \
  "$here/manifest.json" > "$work/manifest.json"
cp "$here/color.png" "$here/outline.png" "$work/"
rm -f "$out"
if command -v zip >/dev/null 2>&1; then
  (cd "$work" && zip -q "$out" manifest.json color.png outline.png)
else
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); [z.write(sys.argv[2] + "/" + f, f) for f in ("manifest.json", "color.png", "outline.png")]; z.close()' "$out" "$work"
fi
echo "wrote $out"
