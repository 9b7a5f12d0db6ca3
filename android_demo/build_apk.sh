#!/usr/bin/env bash
# Builds the debug APK of the melkit demo app from android_demo/ (this folder).
#
#   build_apk.sh [--gradle | --debian] [--litert-aar FILE.aar ...] [--out DIR]
#
# --gradle (the default when an Android SDK and Gradle are there): ./gradlew assembleDebug, which fetches
#   LiteRT itself. --debian (what CI does; the default otherwise): javac against the API 23 android.jar,
#   aapt, dx, zipalign and apksigner from Debian (android_demo/setup_toolchain.sh installs them), signed with
#   a debug key made by keytool in the output folder. The model in app/src/main/assets (put there by
#   `melkit bundle`) is stored uncompressed, then apksigner verify, zipalign -c and aapt dump badging run.
#
# Without --litert-aar the APK has no LiteRT runtime: it is a packaging proof, and the app says so when
# started. With the AARs from Maven (one --litert-aar each: litert, litert-api, and for the GPU
# litert-gpu, litert-gpu-api, all of the version app/build.gradle pins, litertVersion = 1.4.0) their
# classes are compiled against and dexed in and their jni/<abi>/*.so packed, so the APK classifies. The
# .so files are packed compressed (the installer extracts them; Debian's zipalign has no 16 KB page mode),
# so what matters on a 16 KB-page device is their ELF segment alignment: each one's is checked and a
# warning printed below 16 KB (LiteRT before 1.4.0). This script fetches nothing and names no version
# itself. Output: <out>/melkit-demo-debug.apk (default out: android_demo/build/apk).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mode="" out="$here/build/apk" aars=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gradle) mode=gradle ;;
    --debian) mode=debian ;;
    --litert-aar) aars+=("$(realpath "$2")"); shift ;;
    --out) out="$(realpath -m "$2")"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build_apk: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$mode" ]; then
  mode=debian
  if [ -n "${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}" ] && { [ -f "$here/gradle/wrapper/gradle-wrapper.jar" ] || command -v gradle >/dev/null; }; then
    mode=gradle
  fi
fi
if [ "$mode" = gradle ]; then
  cd "$here" && ./gradlew assembleDebug
  echo "build_apk: $here/app/build/outputs/apk/debug/app-debug.apk"
  exit 0
fi

# --- Debian toolchain ---------------------------------------------------------------------------------
tc="${MELKIT_ANDROID_TOOLCHAIN:-$here/.toolchain}"
framework=/usr/share/android-framework-res/framework-res.apk
stubs="${MELKIT_LITERT_STUBS:-$here/../tests/android/litert_stubs}"
for f in "$tc/android.jar" "$tc/dx.jar" "$framework"; do
  [ -f "$f" ] || { echo "build_apk: $f missing: run android_demo/setup_toolchain.sh" >&2; exit 2; }
done
for t in aapt zipalign apksigner keytool javac; do
  command -v "$t" >/dev/null || { echo "build_apk: $t missing: run android_demo/setup_toolchain.sh" >&2; exit 2; }
done

# Package, versions and SDK levels: read from app/build.gradle, the one place they are written.
gradle_value() { sed -n "s/^ *$1 *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$here/app/build.gradle" | head -n1; }
app_id="$(gradle_value applicationId)"; min_sdk="$(gradle_value minSdk)"; target_sdk="$(gradle_value targetSdk)"
version_code="$(gradle_value versionCode)"; version_name="$(gradle_value versionName)"

work="$out/work"
rm -rf "$work" && mkdir -p "$work/gen" "$work/classes" "$work/stubs" "$work/dex" "$work/jars"
main="$here/app/src/main"
# AGP takes the package from build.gradle (namespace); aapt needs it in the manifest.
sed "0,/<manifest /s//<manifest package=\"$app_id\" /" "$main/AndroidManifest.xml" > "$work/AndroidManifest.xml"

echo "build_apk: aapt (R.java, resources, assets; .tflite stored uncompressed)"
aapt package -f -m -J "$work/gen" -M "$work/AndroidManifest.xml" -S "$main/res" -A "$main/assets" \
  -I "$framework" --min-sdk-version "$min_sdk" --target-sdk-version "$target_sdk" \
  --version-code "$version_code" --version-name "$version_name" -0 tflite -F "$work/unsigned.apk"

classpath=()
if [ "${#aars[@]}" -gt 0 ]; then
  for aar in "${aars[@]}"; do
    name="$(basename "$aar" .aar)"
    mkdir -p "$work/aar/$name"
    (cd "$work/aar/$name" && jar xf "$aar")
    if [ -f "$work/aar/$name/classes.jar" ]; then
      cp "$work/aar/$name/classes.jar" "$work/jars/$name.jar"
      classpath+=("$work/jars/$name.jar")
    fi
  done
else
  echo "build_apk: no --litert-aar: compiling against LiteRT stubs, the APK will not classify"
  javac -nowarn -source 8 -target 8 -bootclasspath "$tc/android.jar" -d "$work/stubs" \
    $(find "$stubs" -name '*.java') 2>&1 | { grep -v "^warning: \[options\]\|^[0-9] warning" || true; }
  classpath+=("$work/stubs")
fi

echo "build_apk: javac (Java 8, against android.jar API 23)"
cp_joined="$(IFS=:; echo "${classpath[*]}")"
javac -encoding UTF-8 -source 8 -target 8 -bootclasspath "$tc/android.jar" -cp "$cp_joined" -d "$work/classes" \
  $(find "$main/java" "$work/gen" -name '*.java') 2>&1 | { grep -v "^warning: \[options\]\|^[0-9] warning" || true; }
test "${PIPESTATUS[0]}" -eq 0

echo "build_apk: dx (classes.dex)"
dex_inputs=("$work/classes")
[ -n "$(ls "$work/jars")" ] && dex_inputs+=("$work"/jars/*.jar)
dx=(java -cp "$tc/dx.jar" com.android.dx.command.Main --dex --output="$work/dex/classes.dex")
if ! "${dx[@]}" "${dex_inputs[@]}"; then
  # dx 1.16 turns Java 8 lambdas (maybe in a LiteRT AAR, never in melkit's sources) into dex only for API 26+.
  [ "${#aars[@]}" -gt 0 ] || exit 1
  echo "build_apk: dx failed; retrying with --min-sdk-version=26 (this APK then needs Android 8.0+)" >&2
  "${dx[@]}" --min-sdk-version=26 "${dex_inputs[@]}"
fi
(cd "$work/dex" && aapt add "$work/unsigned.apk" classes.dex >/dev/null)

# Native libraries from the AARs (jni/<abi>/*.so -> lib/<abi>/*.so).
for d in "$work"/aar/*/jni; do
  [ -d "$d" ] || continue
  mkdir -p "$work/native/lib" && cp -r "$d"/. "$work/native/lib/"
done
if [ -d "$work/native/lib" ]; then
  (cd "$work/native" && aapt add "$work/unsigned.apk" $(find lib -name '*.so' | sort) >/dev/null)
  # 16 KB pages (Android 15+ devices): every LOAD segment of a library must be aligned to 16 KB or more.
  for so in $(cd "$work/native" && find lib -name '*.so' | sort); do
    align="$({ readelf -lW "$work/native/$so" 2>/dev/null || true; } | awk '$1 == "LOAD" { print $NF }' \
      | while read -r a; do echo $((a)); done | sort -n | head -n1)"
    if [ -z "$align" ]; then
      echo "build_apk: $so: no ELF program headers read (readelf missing, or not an ELF library)" >&2
    elif [ "$align" -lt 16384 ]; then
      echo "build_apk: WARNING: $so is aligned to $align, not 16 KB: it will not load on 16 KB-page devices; use LiteRT 1.4.0 or later" >&2
    fi
  done
fi

echo "build_apk: zipalign, apksigner"
zipalign -f -p 4 "$work/unsigned.apk" "$work/aligned.apk"
ks="$out/debug.keystore"
if [ ! -f "$ks" ]; then
  keytool -genkeypair -keystore "$ks" -storepass android -keypass android -alias androiddebugkey \
    -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
fi
apk="$out/melkit-demo-debug.apk"
apksigner sign --ks "$ks" --ks-pass pass:android --key-pass pass:android --out "$apk" "$work/aligned.apk"

echo "build_apk: checks"
apksigner verify --verbose "$apk" | head -n 4
zipalign -c -p 4 "$apk"
aapt dump badging "$apk" | grep -E "^(package|sdkVersion|targetSdkVersion|launchable-activity)"
echo "build_apk: $apk"
