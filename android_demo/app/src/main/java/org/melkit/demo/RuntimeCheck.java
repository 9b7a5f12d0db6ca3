package org.melkit.demo;

/** Whether LiteRT is in this APK, asked without loading any class that links against it. */
final class RuntimeCheck {
    private RuntimeCheck() {
    }

    /** Null when LiteRT's classes and native library are there, else what is missing. */
    static String missing() {
        try {
            Class.forName("org.tensorflow.lite.Interpreter", false, RuntimeCheck.class.getClassLoader());
        } catch (ClassNotFoundException e) {
            return "LiteRT classes (org.tensorflow.lite.Interpreter)";
        }
        try {
            System.loadLibrary("tensorflowlite_jni");
        } catch (UnsatisfiedLinkError e) {
            return "LiteRT native library (libtensorflowlite_jni.so)";
        }
        return null;
    }
}
