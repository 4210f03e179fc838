/* SPDX-License-Identifier: MIT */
/*
 * helpers-tls: what the C tests that run a real OpenSSL handshake share
 * (test-proto-tls, test-engine-tlsho).
 */
#ifndef RC_TESTS_HELPERS_TLS_H
#define RC_TESTS_HELPERS_TLS_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "helpers.h"

/*
 * A self-signed P-256 certificate for "localhost", valid for an hour, in
 * *@cert with its key in *@pkey (the caller frees both). Returns 0 or 1.
 */
static inline int t_make_cert(X509 **cert, EVP_PKEY **pkey)
{
	X509_NAME *name;
	X509 *c;

	*pkey = EVP_EC_gen("P-256");
	*cert = c = X509_new();
	T_CHECK(*pkey && c);
	T_CHECK(X509_set_version(c, 2) == 1);
	T_CHECK(ASN1_INTEGER_set(X509_get_serialNumber(c), 1) == 1);
	T_CHECK(X509_gmtime_adj(X509_getm_notBefore(c), -60));
	T_CHECK(X509_gmtime_adj(X509_getm_notAfter(c), 3600));
	T_CHECK(X509_set_pubkey(c, *pkey) == 1);
	name = X509_get_subject_name(c);
	T_CHECK(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					   (const unsigned char *)"localhost",
					   -1, -1, 0) == 1);
	T_CHECK(X509_set_issuer_name(c, name) == 1);
	T_CHECK(X509_sign(c, *pkey, EVP_sha256()) > 0);
	return 0;
}

#endif
