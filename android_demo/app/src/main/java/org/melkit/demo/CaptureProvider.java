package org.melkit.demo;

import java.io.File;
import java.io.FileNotFoundException;

import android.content.ContentProvider;
import android.content.ContentValues;
import android.database.Cursor;
import android.database.MatrixCursor;
import android.net.Uri;
import android.os.ParcelFileDescriptor;
import android.provider.OpenableColumns;

/**
 * Serves one file, the camera's output: ACTION_IMAGE_CAPTURE writes the photo into the Uri we give it,
 * and since API 24 that must be a content:// Uri, not a file path. Not exported; the camera app gets a
 * temporary grant for this Uri only.
 */
public class CaptureProvider extends ContentProvider {
    static final String AUTHORITY = "org.melkit.demo.capture";
    static final Uri CAPTURE_URI = Uri.parse("content://" + AUTHORITY + "/capture.jpg");

    static File captureFile(File cacheDir) {
        return new File(cacheDir, "capture.jpg");
    }

    @Override
    public boolean onCreate() {
        return true;
    }

    private File file(Uri uri) throws FileNotFoundException {
        if (!CAPTURE_URI.getPath().equals(uri.getPath())) {
            throw new FileNotFoundException(uri.toString());
        }
        return captureFile(getContext().getCacheDir());
    }

    @Override
    public ParcelFileDescriptor openFile(Uri uri, String mode) throws FileNotFoundException {
        File f = file(uri);
        int flags = mode.contains("w")
                ? ParcelFileDescriptor.MODE_READ_WRITE | ParcelFileDescriptor.MODE_CREATE
                        | ParcelFileDescriptor.MODE_TRUNCATE
                : ParcelFileDescriptor.MODE_READ_ONLY;
        return ParcelFileDescriptor.open(f, flags);
    }

    @Override
    public Cursor query(Uri uri, String[] projection, String selection, String[] args, String sort) {
        // Some camera apps ask for the name and size before writing.
        MatrixCursor c = new MatrixCursor(new String[] {OpenableColumns.DISPLAY_NAME, OpenableColumns.SIZE});
        File f = captureFile(getContext().getCacheDir());
        c.addRow(new Object[] {f.getName(), f.length()});
        return c;
    }

    @Override
    public String getType(Uri uri) {
        return "image/jpeg";
    }

    @Override
    public Uri insert(Uri uri, ContentValues values) {
        throw new UnsupportedOperationException("read/write of the capture file only");
    }

    @Override
    public int delete(Uri uri, String selection, String[] args) {
        return 0;
    }

    @Override
    public int update(Uri uri, ContentValues values, String selection, String[] args) {
        return 0;
    }
}
