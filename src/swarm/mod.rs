//! The sans-IO swarm core: membership, who offers, timeouts and budgets.
//!
//! Nothing here does I/O or reads a clock: the browser layer feeds inputs with `now` and
//! drains outputs, so every rule is tested natively and deterministically.

use crate::signal::PeerId;

/// Which side of a pair of peers sends the WebRTC offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This peer creates the offer.
    Offerer,
    /// This peer waits for the remote's offer and answers it.
    Answerer,
}

impl Role {
    /// The glare-free rule: of two peers, the one with the smaller id offers. Both sides compute
    /// the same answer from the same two ids, so two offers never cross.
    pub fn between(me: &PeerId, them: &PeerId) -> Role {
        if me < them {
            Role::Offerer
        } else {
            Role::Answerer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_side_offers() {
        let a = PeerId::new("AAAA").unwrap();
        let b = PeerId::new("bbbb").unwrap();
        assert_eq!(Role::between(&a, &b), Role::Offerer);
        assert_eq!(Role::between(&b, &a), Role::Answerer);
    }
}
