/*
 * SHA-256 as org.bouncycastle.crypto.digests.SHA256Digest offers it to JavaRosa.
 *
 * ODK Collect ships Bouncy Castle; the ODK Validate jar pyxform bundles leaves this one class out,
 * so JavaRosa's randomize() with a text seed (seeded by the SHA-256 of the text) would fail there.
 * This stands in for it with the JDK's own SHA-256, for EvalXPath only.
 */
package org.bouncycastle.crypto.digests;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

public class SHA256Digest {
    private final MessageDigest digest;

    public SHA256Digest() {
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    public void update(byte[] in, int offset, int length) { digest.update(in, offset, length); }

    public int doFinal(byte[] out, int offset) {
        byte[] hash = digest.digest();
        System.arraycopy(hash, 0, out, offset, hash.length);
        return hash.length;
    }
}
