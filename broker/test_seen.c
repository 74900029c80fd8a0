/*  test_seen - the broker's replay window (seen.c). */
#include "broker.h"
#include "testing.h"

static void s_id(uint8_t id[SBI_ID_SIZE], uint32_t n)
{
    memset(id, 0, SBI_ID_SIZE);
    memcpy(id, &n, sizeof n);
}

TEST(test_an_id_is_seen_until_it_expires)
{
    broker_seen_t *seen = broker_seen_new();
    uint8_t id[SBI_ID_SIZE], other[SBI_ID_SIZE];
    s_id(id, 1);
    s_id(other, 2);
    CHECK(!broker_seen_has(seen, id, 1000));
    broker_seen_add(seen, id, 5000, 1000);
    CHECK(broker_seen_has(seen, id, 1000));
    CHECK(broker_seen_has(seen, id, 5000));
    CHECK(!broker_seen_has(seen, id, 5001));
    CHECK(!broker_seen_has(seen, other, 1000));
    /* Added again (a restart reloading it): the later expiry holds. */
    broker_seen_add(seen, id, 9000, 1000);
    broker_seen_add(seen, id, 2000, 1000);
    CHECK(broker_seen_has(seen, id, 8000));
    CHECK_EQ(broker_seen_size(seen), 1);
    broker_seen_destroy(&seen);
    CHECK(seen == NULL);
    broker_seen_destroy(&seen);
}

TEST(test_a_million_ids_are_all_found)
{
    broker_seen_t *seen = broker_seen_new();
    uint8_t id[SBI_ID_SIZE];
    /* Ids that differ in their last bytes only, as a sender could choose. */
    for (uint32_t n = 0; n < 1000000; n++) {
        s_id(id, 0);
        memcpy(id + SBI_ID_SIZE - 4, &n, 4);
        broker_seen_add(seen, id, 10000 + n / 1000, 10000);
    }
    int missing = 0;
    for (uint32_t n = 0; n < 1000000; n++) {
        s_id(id, 0);
        memcpy(id + SBI_ID_SIZE - 4, &n, 4);
        missing += !broker_seen_has(seen, id, 10000);
    }
    CHECK_EQ(missing, 0);
    CHECK_EQ(broker_seen_size(seen), 1000000);
    broker_seen_destroy(&seen);
}

TEST(test_expired_ids_are_forgotten_when_room_is_needed)
{
    broker_seen_t *seen = broker_seen_new();
    uint8_t id[SBI_ID_SIZE];
    for (uint32_t n = 0; n < 1000; n++) {
        s_id(id, n);
        broker_seen_add(seen, id, 100, 50);
    }
    /* At 200 those have expired; 3,000 new ids fill the table past its
       limit, and the rebuild keeps only live ones. */
    for (uint32_t n = 1000; n < 4000; n++) {
        s_id(id, n);
        broker_seen_add(seen, id, 1000, 200);
    }
    CHECK_EQ(broker_seen_size(seen), 3000);
    s_id(id, 5);
    CHECK(!broker_seen_has(seen, id, 200));
    s_id(id, 3999);
    CHECK(broker_seen_has(seen, id, 200));
    broker_seen_destroy(&seen);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    return RUN_TESTS();
}
