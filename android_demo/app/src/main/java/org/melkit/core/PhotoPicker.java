package org.melkit.core;

/**
 * Whether the app can ask for an image with the system photo picker ({@code MediaStore.ACTION_PICK_IMAGES}):
 * no storage permission, only the photo the user chose is shared. The app compiles against API 23, so the
 * action is a string here and the decision takes the SDK levels as numbers (plain Java, tested on the JVM).
 */
public final class PhotoPicker {
    /** {@code MediaStore.ACTION_PICK_IMAGES} (API 33, and API 30-32 with the R SDK extension 2). */
    public static final String ACTION_PICK_IMAGES = "android.provider.action.PICK_IMAGES";
    /** {@code Build.VERSION_CODES.TIRAMISU}: Android 13, where the picker is part of the platform. */
    public static final int SDK_PICKER = 33;
    /** {@code Build.VERSION_CODES.R}: Android 11, from where Google Play system updates can add the picker. */
    public static final int SDK_EXTENSIONS = 30;
    /** The R SDK extension version that brought the picker ({@code SdkExtensions.getExtensionVersion(R)}). */
    public static final int R_EXTENSION_PICKER = 2;

    private PhotoPicker() {
    }

    /**
     * True on Android 13+, and on Android 11 and 12 whose MediaProvider module was updated to R extension 2 or
     * later (there {@code MediaStore.getPickImagesMaxLimit} exists too); false before (the app then falls
     * back to {@code ACTION_GET_CONTENT}). {@code rExtensionVersion}: 0 where it cannot be read.
     */
    public static boolean available(int sdkInt, int rExtensionVersion) {
        return sdkInt >= SDK_PICKER || (sdkInt >= SDK_EXTENSIONS && rExtensionVersion >= R_EXTENSION_PICKER);
    }
}
