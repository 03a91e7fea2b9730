"""Getting submissions in: decrypting ODK encrypted submissions before anything reads them."""
