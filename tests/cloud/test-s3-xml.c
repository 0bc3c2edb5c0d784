// SPDX-License-Identifier: MIT
/* Unit test of lib/cloud/s3-xml.c: ListObjectsV2 pages and <Error> bodies as
 * AWS documents them, with and without namespaces, entities, and the
 * malformed replies that must fail with -EPROTO instead of yielding a
 * partial listing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "topcow.h"
#include "error.h"
#include "s3-xml.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " [last error: %s]\n", topcow_last_error());                           \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int
parse(const char *xml, struct s3_xml_list *l)
{
    err_begin("test");
    return s3_xml_parse_list(xml, strlen(xml), l);
}

static void
test_page(void)
{
    static const char page[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
        "  <Name>bucket</Name><Prefix>img/</Prefix><KeyCount>2</KeyCount>\n"
        "  <MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>\n"
        "  <Contents><Key>img/a&amp;b &lt;c&gt;</Key>"
        "<LastModified>2024-01-01T00:00:00.000Z</LastModified>"
        "<ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>\n"
        "  <Contents><Key>img/\xc3\xa9t\xc3\xa9</Key><Size>18446744073709551615</Size>"
        "<ETag>\"abc-2\"</ETag><Owner><ID>x</ID><Key>not-an-entry-key</Key></Owner></Contents>\n"
        "  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
        "</ListBucketResult>\n";
    struct s3_xml_list l;
    int r = parse(page, &l);
    CHECK(r == 0, "page: %d", r);
    if (r < 0)
        return;
    CHECK(l.n == 2, "entries: %zu", l.n);
    CHECK(l.truncated, "IsTruncated");
    CHECK(l.next_token && strcmp(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=") == 0,
          "token");
    if (l.n == 2) {
        CHECK(strcmp(l.entries[0].key, "img/a&b <c>") == 0, "entities: '%s'", l.entries[0].key);
        /* 2024-01-01T00:00:00Z: date -u -d 2024-01-01 +%s */
        CHECK(l.entries[0].mtime == 1704067200, "LastModified: %lld", (long long)l.entries[0].mtime);
        CHECK(l.entries[1].mtime == 0, "no LastModified: %lld", (long long)l.entries[1].mtime);
        CHECK(strcmp(l.entries[0].etag, "5d41402abc4b2a76b9719d911017c592") == 0,
              "etag unquoted: '%s'", l.entries[0].etag);
        CHECK(l.entries[0].size == 5, "size");
        CHECK(strcmp(l.entries[1].key, "img/\xc3\xa9t\xc3\xa9") == 0, "UTF-8 key");
        CHECK(l.entries[1].size == UINT64_MAX, "largest size");
        CHECK(strcmp(l.entries[1].etag, "abc-2") == 0, "multipart etag");
    }
    s3_xml_list_free(&l);

    /* The last page: no token, no namespace, an empty listing. */
    r = parse("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>", &l);
    CHECK(r == 0 && l.n == 0 && !l.truncated && !l.next_token, "empty last page: %d", r);
    s3_xml_list_free(&l);
    /* A prefixed namespace reads the same. */
    r = parse("<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
              "<s3:Contents><s3:Key>k</s3:Key><s3:Size>1</s3:Size></s3:Contents>"
              "<s3:IsTruncated>false</s3:IsTruncated></s3:ListBucketResult>",
              &l);
    CHECK(r == 0 && l.n == 1 && strcmp(l.entries[0].key, "k") == 0 &&
              strcmp(l.entries[0].etag, "") == 0,
          "prefixed namespace: %d", r);
    s3_xml_list_free(&l);
}

static void
test_malformed(void)
{
    static const struct {
        const char *xml, *why;
    } bad[] = {
        {"", "empty"},
        {"not xml at all", "not XML"},
        {"<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents>", "truncated body"},
        {"<Error><Code>x</Code></Error>", "not a ListBucketResult"},
        {"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
         "Size is not a number"},
        {"<ListBucketResult><Contents><Key>k</Key><Size>18446744073709551616</Size></Contents>"
         "</ListBucketResult>",
         "Size is not a number"},
        {"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
         "without Key"},
        {"<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
         "without Key or Size"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
         "without NextContinuationToken"},
        {"<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
         "neither true nor false"},
        {"<ListBucketResult><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>"
         "</a></a></a></a></a></a></a></a></a></a></a></a></a></a></a></a></a>"
         "</ListBucketResult>",
         "nested too deeply"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct s3_xml_list l;
        int r = parse(bad[i].xml, &l);
        CHECK(r == -EPROTO && strstr(topcow_last_error(), "malformed ListObjectsV2 reply") &&
                  (!bad[i].why[0] || strstr(topcow_last_error(), bad[i].why) ||
                   strcmp(bad[i].why, "empty") == 0 || strcmp(bad[i].why, "not XML") == 0 ||
                   strcmp(bad[i].why, "truncated body") == 0),
              "case %zu (%s): %d", i, bad[i].why, r);
        CHECK(l.n == 0 && !l.entries && !l.next_token, "case %zu leaves the page empty", i);
    }
}

static void
test_error_body(void)
{
    static const char body[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
        "does not match the signature you provided.</Message><RequestId>4442587FB7D0A2F9"
        "</RequestId></Error>";
    struct s3_xml_error e;
    s3_xml_parse_error(body, strlen(body), &e);
    CHECK(strcmp(e.code, "SignatureDoesNotMatch") == 0, "code '%s'", e.code);
    CHECK(strncmp(e.message, "The request signature", 21) == 0, "message '%s'", e.message);
    s3_xml_parse_error("<html>502 Bad Gateway</html>", 28, &e);
    CHECK(e.code[0] == '\0' && e.message[0] == '\0', "an HTML body gives nothing");
    s3_xml_parse_error("garbage", 7, &e);
    CHECK(e.code[0] == '\0', "garbage gives nothing");
    s3_xml_parse_error(NULL, 0, &e);
    CHECK(e.code[0] == '\0', "no body gives nothing");
    char out[8];
    CHECK(s3_etag_unquote("\"abc\"", out, sizeof out) && strcmp(out, "abc") == 0, "unquote");
    CHECK(s3_etag_unquote("abc", out, sizeof out) && strcmp(out, "abc") == 0, "already bare");
    CHECK(!s3_etag_unquote("\"abcdefghij\"", out, sizeof out), "too long");
}

int
main(void)
{
    test_page();
    test_malformed();
    test_error_body();
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
