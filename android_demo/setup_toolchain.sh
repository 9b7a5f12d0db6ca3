#!/usr/bin/env bash
# Installs the Android toolchain CI uses to prove the app (see README "Android app"): Debian 12's aapt,
# zipalign, apksigner, framework-res, dexdump, JUnit 4 and Android's org.json, plus android.jar (API 23) and
# dx unpacked from the two checked .debs in ../shared/android-sdk (Debian 12 has neither).
# Without ../shared/android-sdk it does nothing and the Android tests skip; any other failure is fatal,
# so a broken toolchain can never turn into silently skipped tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sdk="${MELKIT_ANDROID_SDK:-$here/../../shared/android-sdk}"
dest="$here/.toolchain"   # ignored by git

if [ ! -f "$sdk/SHA256SUMS" ]; then
  echo "setup_toolchain: $sdk not present, Android toolchain not installed (Android tests will skip)"
  exit 0
fi

pkgs=(aapt zipalign apksigner android-framework-res dexdump junit4 libandroid-json-java)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v javac >/dev/null || missing+=(default-jdk-headless)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup_toolchain: apt-get install ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The .debs are verified before anything is unpacked from them.
(cd "$sdk" && sha256sum --quiet -c SHA256SUMS)
mkdir -p "$dest"
for deb in "$sdk"/*.deb; do
  stamp="$dest/$(basename "$deb").ok"
  [ -f "$stamp" ] && continue
  dpkg-deb -x "$deb" "$dest/root"
  touch "$stamp"
done
ln -sf root/usr/share/java/com.android.android-23.jar "$dest/android.jar"
ln -sf root/usr/share/java/com.android.dx.jar "$dest/dx.jar"
test -s "$dest/android.jar" && test -s "$dest/dx.jar"
echo "setup_toolchain: Android toolchain ready in $dest"
