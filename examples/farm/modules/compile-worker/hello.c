#include <stdio.h>

int main(void) {
    printf("hello from the compile farm\n");
    return 0;
}
