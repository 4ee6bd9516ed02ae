/* What the two example programs share: output, exit, interrupts. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

/* External interrupt the shm example uses as the device's doorbell (not
 * wired to any mps2-an386 peripheral that is enabled here). */
#define DOORBELL_IRQ 7u

void put_str(const char *s);
void put_u32(uint32_t v);
void put_hex8(uint8_t v);
void board_exit(int status) __attribute__((noreturn));
void nvic_enable(unsigned irq);
void nvic_pend(unsigned irq);

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            put_str("FAIL: " #cond " (line ");                         \
            put_u32(__LINE__);                                         \
            put_str(")\n");                                            \
            return 1;                                                  \
        }                                                              \
    } while (0)

#endif
