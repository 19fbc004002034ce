//! The order state machine. No I/O.

use mercato_core::Error;

pub use mercato_contracts::orders::{Address, HistoryEntry, Order, OrderItem, OrderStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pay,
    Fulfil,
    Complete,
    Cancel,
    /// The payment window closed.
    Expire,
    /// A refund; `full` when it brings the refunded total to the order total.
    Refund {
        full: bool,
    },
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Pay => "pay",
            Action::Fulfil => "fulfil",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
            Action::Expire => "expire",
            Action::Refund { .. } => "refund",
        }
    }
}

/// The only legal moves. Everything else is an `illegal-transition` error.
pub fn next(status: OrderStatus, action: Action) -> Result<OrderStatus, Error> {
    use Action as A;
    use OrderStatus as S;
    let to = match (status, action) {
        (S::PendingPayment, A::Pay) => S::Paid,
        (S::PendingPayment, A::Cancel | A::Expire) => S::Cancelled,
        (S::Paid, A::Fulfil) => S::Fulfilled,
        (S::Paid, A::Cancel) => S::Cancelled,
        (S::Fulfilled, A::Complete) => S::Completed,
        (s @ (S::Paid | S::Fulfilled | S::Completed), A::Refund { full }) => {
            if full {
                S::Refunded
            } else {
                s
            }
        }
        (from, action) => return Err(Error::illegal_transition(from.as_str(), action.verb())),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use OrderStatus as S;

    #[test]
    fn only_legal_transitions_are_allowed() {
        let all = [S::PendingPayment, S::Paid, S::Fulfilled, S::Completed, S::Cancelled, S::Refunded];
        let actions =
            [A::Pay, A::Fulfil, A::Complete, A::Cancel, A::Expire, A::Refund { full: false }, A::Refund { full: true }];
        let legal = [
            (S::PendingPayment, A::Pay, S::Paid),
            (S::PendingPayment, A::Cancel, S::Cancelled),
            (S::PendingPayment, A::Expire, S::Cancelled),
            (S::Paid, A::Fulfil, S::Fulfilled),
            (S::Paid, A::Cancel, S::Cancelled),
            (S::Fulfilled, A::Complete, S::Completed),
            (S::Paid, A::Refund { full: false }, S::Paid),
            (S::Paid, A::Refund { full: true }, S::Refunded),
            (S::Fulfilled, A::Refund { full: false }, S::Fulfilled),
            (S::Fulfilled, A::Refund { full: true }, S::Refunded),
            (S::Completed, A::Refund { full: false }, S::Completed),
            (S::Completed, A::Refund { full: true }, S::Refunded),
        ];
        for from in all {
            for action in actions {
                let expected = legal.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, t)| *t);
                match (next(from, action), expected) {
                    (Ok(to), Some(t)) => assert_eq!(to, t, "{from:?} + {action:?}"),
                    (Err(e), None) => assert_eq!(e.code, mercato_core::ErrorCode::IllegalTransition),
                    (got, want) => panic!("{from:?} + {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn terminal_states_stay_terminal() {
        for action in [A::Pay, A::Cancel, A::Fulfil, A::Refund { full: true }] {
            assert!(next(S::Cancelled, action).is_err());
            assert!(next(S::Refunded, action).is_err());
        }
    }
}
