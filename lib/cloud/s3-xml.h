// SPDX-License-Identifier: MIT
/* The two XML documents the S3 client reads: a ListObjectsV2 result page and
 * an error reply.  Parsed with expat; the bodies are untrusted, so sizes,
 * depth and entry counts are bounded and a malformed page fails with
 * -EPROTO rather than yielding partial results. */
#ifndef TOPCOW_S3_XML_H
#define TOPCOW_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_XML_MAX_ENTRIES 100000 /* per page; S3 sends at most 1,000 */

struct s3_xml_entry {
    char *key;
    char *etag; /* quotes removed; "" when the server sent none */
    uint64_t size;
    int64_t mtime; /* LastModified as Unix seconds; 0 when absent or unreadable */
};

struct s3_xml_list {
    struct s3_xml_entry *entries;
    size_t n;
    bool truncated;
    char *next_token; /* NextContinuationToken, or NULL */
};

/* Parse a ListBucketResult (ListObjectsV2) page of @len bytes.  Returns 0,
 * -EPROTO with a message (not XML, not a ListBucketResult, an entry without
 * a key or with a bad size, limits exceeded) or -ENOMEM.  On success free
 * @out with s3_xml_list_free(); on failure it is left empty. */
int s3_xml_parse_list(const char *body, size_t len, struct s3_xml_list *out);
void s3_xml_list_free(struct s3_xml_list *l);

/* The Code and Message of an S3 <Error> reply, best effort: fields the body
 * lacks (or a body that is not such XML) leave them "".  Never fails. */
struct s3_xml_error {
    char code[64];
    char message[200];
};
void s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *out);

/* @etag without surrounding double quotes, copied into @out (@size bytes).
 * Returns false when it does not fit. */
bool s3_etag_unquote(const char *etag, char *out, size_t size);

#endif
