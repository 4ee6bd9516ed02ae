//! Simulated GPIO lines with a loopback (feature `test-utils`): output line
//! `k` drives input line `k + 1`, so a driver's writes raise interrupts on
//! the next line. An input line with no output before it reads the level
//! the test sets ([`Loopback::drive`]). Lines are named `loop0`, `loop1`, …
//! (the first 32).

use super::{Direction, GpioBank, LineError};

const NAMES: [&str; 32] = [
    "loop0", "loop1", "loop2", "loop3", "loop4", "loop5", "loop6", "loop7", "loop8", "loop9",
    "loop10", "loop11", "loop12", "loop13", "loop14", "loop15", "loop16", "loop17", "loop18",
    "loop19", "loop20", "loop21", "loop22", "loop23", "loop24", "loop25", "loop26", "loop27",
    "loop28", "loop29", "loop30", "loop31",
];

/// `N` looped-back lines.
#[derive(Clone, Debug)]
pub struct Loopback<const N: usize> {
    direction: [Direction; N],
    out: [bool; N],
    external: [bool; N],
}

impl<const N: usize> Default for Loopback<N> {
    fn default() -> Self {
        Self {
            direction: [Direction::None; N],
            out: [false; N],
            external: [false; N],
        }
    }
}

impl<const N: usize> Loopback<N> {
    /// All lines released, every level low.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the level an input line sees when no output line drives it.
    pub fn drive(&mut self, line: u16, level: bool) {
        if let Some(e) = self.external.get_mut(usize::from(line)) {
            *e = level;
        }
    }

    /// The level the line is at.
    pub fn level(&self, line: u16) -> bool {
        let i = usize::from(line);
        if self.direction.get(i) == Some(&Direction::Out) {
            return self.out.get(i).copied().unwrap_or(false);
        }
        if let Some(prev) = i.checked_sub(1)
            && self.direction.get(prev) == Some(&Direction::Out)
        {
            return self.out.get(prev).copied().unwrap_or(false);
        }
        self.external.get(i).copied().unwrap_or(false)
    }
}

impl<const N: usize> GpioBank for Loopback<N> {
    fn name(&self, line: u16) -> &str {
        if usize::from(line) < N {
            NAMES.get(usize::from(line)).copied().unwrap_or("")
        } else {
            ""
        }
    }

    fn set_direction(
        &mut self,
        line: u16,
        direction: Direction,
        value: bool,
    ) -> Result<(), LineError> {
        let i = usize::from(line);
        let d = self.direction.get_mut(i).ok_or(LineError::Unsupported)?;
        *d = direction;
        if direction == Direction::Out
            && let Some(o) = self.out.get_mut(i)
        {
            *o = value;
        }
        Ok(())
    }

    fn get_value(&mut self, line: u16) -> Result<bool, LineError> {
        if usize::from(line) >= N {
            return Err(LineError::Unsupported);
        }
        Ok(self.level(line))
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<(), LineError> {
        let o = self
            .out
            .get_mut(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        *o = value;
        Ok(())
    }
}
