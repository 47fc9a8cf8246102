//! slimnet core (in progress)
