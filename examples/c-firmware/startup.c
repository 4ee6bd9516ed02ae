/* Reset, vectors and semihosting for QEMU's mps2-an386 (Cortex-M4F). */
#include <stdint.h>
#include <string.h>

#include "board.h"

extern uint32_t _stack_top, _data_start, _data_end, _data_load, _bss_start, _bss_end;
extern int main(void);

/* A semihosting call: operation in r0, argument in r1, result in r0. */
static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void put_str(const char *s)
{
    semihost(0x04 /* SYS_WRITE0 */, s);
}

void put_u32(uint32_t v)
{
    char buf[11];
    char *p = buf + sizeof buf - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    put_str(p);
}

void put_hex8(uint8_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[3] = {digits[v >> 4], digits[v & 15u], '\0'};
    put_str(buf);
}

/* Ends the QEMU run with `status` as its exit code: SYS_EXIT_EXTENDED with
 * ADP_Stopped_ApplicationExit carries the status; plain SYS_EXIT (status
 * 0 or 1 only) if the host lacks the extended call. */
void board_exit(int status)
{
    const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
    semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
    semihost(0x18 /* SYS_EXIT */, (const void *)(status == 0 ? 0x20026u : 0x20023u));
    for (;;) {
        __asm__ volatile("wfi");
    }
}

void nvic_enable(unsigned irq)
{
    *(volatile uint32_t *)(0xe000e100u + 4u * (irq / 32u)) = 1u << (irq % 32u);
}

void nvic_pend(unsigned irq)
{
    *(volatile uint32_t *)(0xe000e200u + 4u * (irq / 32u)) = 1u << (irq % 32u);
}

void reset_handler(void)
{
    /* The library is built for the hard-float ABI: enable CP10/CP11. */
    *(volatile uint32_t *)0xe000ed88u |= 0xfu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    memcpy(&_data_start, &_data_load, (size_t)((char *)&_data_end - (char *)&_data_start));
    memset(&_bss_start, 0, (size_t)((char *)&_bss_end - (char *)&_bss_start));
    board_exit(main());
}

static void fault_handler(void)
{
    put_str("FAIL: fault\n");
    board_exit(3);
}

static void unexpected_irq(void)
{
    put_str("FAIL: unexpected interrupt\n");
    board_exit(4);
}

/* Weak: a program that uses the doorbell interrupt defines it. */
void doorbell_irq_handler(void) __attribute__((weak, alias("unexpected_irq")));

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used)) static const vector_t vectors[16 + 32] = {
    [0] = (vector_t)&_stack_top,
    [1] = reset_handler,
    [2] = fault_handler,  /* NMI */
    [3] = fault_handler,  /* HardFault */
    [4] = fault_handler,  /* MemManage */
    [5] = fault_handler,  /* BusFault */
    [6] = fault_handler,  /* UsageFault */
    [11] = unexpected_irq, /* SVCall */
    [14] = unexpected_irq, /* PendSV */
    [15] = unexpected_irq, /* SysTick */
    [16 + DOORBELL_IRQ] = doorbell_irq_handler,
};
