//! Small scalar programs, parsed onto a [`Tape`]: the text behind `leaky graph expr`.
//!
//! ```text
//! program   := statement ((';' | newline) statement)*
//! statement := NAME '=' expr | expr
//! expr      := term (('+' | '-') term)*
//! term      := unary (('*' | '/') unary)*
//! unary     := '-' unary | power
//! power     := atom (('^' | '**') ['-'] NUMBER)?
//! atom      := NUMBER | NAME | FUNC '(' expr ')' | 'clip' '(' expr ',' NUMBER ',' NUMBER ')' | '(' expr ')'
//! FUNC      := relu | tanh | sigmoid | exp | log | sqrt
//! ```
//!
//! `NAME = NUMBER` (a plain, possibly negative, number) declares an input; any other
//! assignment names the node it computes (re-assigning a name, as in `c = c + 1`, makes a
//! new node drawn as `c'`). The program's value is its last statement. Exponents are
//! constants, as in micrograd; `-a` is `a * -1`.
//!
//! ```
//! let p = leaky::graph::expr::parse("x = -4; z = 2*x + 2 + x; q = relu(z) + z*x; h = relu(z*z); y = h + q + q*x").unwrap();
//! assert_eq!(p.tape.item(p.output), Some(-20.0));
//! assert_eq!(p.tape.grad_item(p.inputs[0].1), Some(46.0));
//! ```

use super::{NodeId, Tape};
use std::collections::HashMap;

/// A parsed program: its tape (already differentiated), inputs and output.
#[derive(Clone, Debug)]
pub struct Program {
    /// The recorded computation; `backward(output)` has been run.
    pub tape: Tape,
    /// The declared inputs, in order of declaration.
    pub inputs: Vec<(String, NodeId)>,
    /// The node of the last statement.
    pub output: NodeId,
}

/// Why a program was rejected, and where (1-based line and column).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Line of the offending token.
    pub line: usize,
    /// Column of the offending token.
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Sym(&'static str),
    End,
}

struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < chars.len() {
        let c = chars[i];
        let column = i - line_start + 1;
        let at = |tok| Token { tok, line, column };
        if c == '\n' {
            out.push(at(Tok::Sym(";")));
            i += 1;
            line += 1;
            line_start = i;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let v = text.parse::<f64>().map_err(|_| ExprError {
                message: format!("'{text}' is not a number"),
                line,
                column,
            })?;
            out.push(at(Tok::Num(v)));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(at(Tok::Name(chars[start..i].iter().collect())));
        } else {
            let sym = match c {
                '*' if chars.get(i + 1) == Some(&'*') => "**",
                '+' => "+",
                '-' => "-",
                '*' => "*",
                '/' => "/",
                '^' => "^",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '=' => "=",
                ';' => ";",
                _ => return Err(ExprError { message: format!("unexpected character '{c}'"), line, column }),
            };
            i += sym.len();
            out.push(at(Tok::Sym(sym)));
        }
    }
    let column = chars.len() - line_start + 1;
    out.push(Token { tok: Tok::End, line, column });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    tape: Tape,
    vars: HashMap<String, NodeId>,
    /// How many times each name was assigned, for the primes of re-assignments.
    assigned: HashMap<String, usize>,
    inputs: Vec<(String, NodeId)>,
    /// Current nesting of parentheses, calls and unary minus (bounded, so that a
    /// pathological program is an error instead of a stack overflow).
    depth: usize,
}

/// The deepest nesting a program may use.
const MAX_DEPTH: usize = 100;

const FUNCS: [&str; 6] = ["relu", "tanh", "sigmoid", "exp", "log", "sqrt"];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        let t = &self.toks[self.pos];
        Err(ExprError { message: message.into(), line: t.line, column: t.column })
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Num(v) => format!("number {v}"),
            Tok::Name(n) => format!("'{n}'"),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "the end of the program".to_string(),
        }
    }

    fn eat(&mut self, sym: &str) -> bool {
        let hit = matches!(self.peek(), Tok::Sym(s) if *s == sym);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, sym: &str) -> Result<(), ExprError> {
        if self.eat(sym) {
            Ok(())
        } else {
            self.err(format!("expected '{sym}', found {}", self.describe()))
        }
    }

    /// A plain number, optionally negative (for inputs, exponents and clip bounds).
    fn signed_number(&mut self) -> Option<f64> {
        let neg = *self.peek() == Tok::Sym("-");
        let at = if neg { self.pos + 1 } else { self.pos };
        if let Tok::Num(v) = self.toks[at].tok {
            self.pos = at + 1;
            Some(if neg { -v } else { v })
        } else {
            None
        }
    }

    fn program(&mut self) -> Result<NodeId, ExprError> {
        let mut last = None;
        loop {
            while self.eat(";") {}
            if *self.peek() == Tok::End {
                break;
            }
            last = Some(self.statement()?);
            if *self.peek() != Tok::End && !self.eat(";") {
                return self.err(format!("expected ';' or a new line, found {}", self.describe()));
            }
        }
        match last {
            Some(id) => Ok(id),
            None => self.err("the program is empty"),
        }
    }

    fn statement(&mut self) -> Result<NodeId, ExprError> {
        if let (Tok::Name(name), Tok::Sym("=")) = (self.peek().clone(), &self.toks[self.pos + 1].tok) {
            if FUNCS.contains(&name.as_str()) || name == "clip" {
                return self.err(format!("'{name}' is a function and cannot be assigned"));
            }
            self.pos += 2;
            // NAME = NUMBER declares an input, when nothing follows the number.
            let save = self.pos;
            if let Some(v) = self.signed_number() {
                if matches!(self.peek(), Tok::Sym(";") | Tok::End) {
                    if self.vars.contains_key(&name) {
                        self.pos = save;
                        return self.err(format!("input '{name}' is declared twice"));
                    }
                    let id = self.tape.input_scalar(&name, v);
                    self.vars.insert(name.clone(), id);
                    self.inputs.push((name, id));
                    return Ok(id);
                }
                self.pos = save;
            }
            let id = self.expr()?;
            let count = self.assigned.entry(name.clone()).or_insert(0);
            let label = format!("{name}{}", "'".repeat(*count));
            *count += 1;
            // A bare name (`y = x`) or an input would be renamed; give it a node of its own.
            let id = if self.tape.node(id).name.is_some() || matches!(self.tape.node(id).op, super::Op::Leaf) {
                let zero = self.tape.scalar(0.0);
                self.tape.add(id, zero)
            } else {
                id
            };
            self.tape.set_name(id, &label);
            self.vars.insert(name, id);
            Ok(id)
        } else {
            self.expr()
        }
    }

    fn expr(&mut self) -> Result<NodeId, ExprError> {
        let mut a = self.term()?;
        loop {
            if self.eat("+") {
                let b = self.term()?;
                a = self.tape.add(a, b);
            } else if self.eat("-") {
                let b = self.term()?;
                a = self.tape.sub(a, b);
            } else {
                return Ok(a);
            }
        }
    }

    fn term(&mut self) -> Result<NodeId, ExprError> {
        let mut a = self.unary()?;
        loop {
            if self.eat("*") {
                let b = self.unary()?;
                a = self.tape.mul(a, b);
            } else if self.eat("/") {
                let b = self.unary()?;
                a = self.tape.div(a, b);
            } else {
                return Ok(a);
            }
        }
    }

    fn unary(&mut self) -> Result<NodeId, ExprError> {
        if self.depth >= MAX_DEPTH {
            return self.err(format!("expressions nested more than {MAX_DEPTH} deep"));
        }
        self.depth += 1;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<NodeId, ExprError> {
        if self.eat("-") {
            // A literal -4 is a constant; -a is a * -1, as in micrograd.
            let powered =
                matches!(self.toks.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Sym("^")) | Some(Tok::Sym("**")));
            if let (Tok::Num(v), false) = (self.peek(), powered) {
                let v = *v;
                self.pos += 1;
                return Ok(self.tape.scalar(-v));
            }
            let a = self.unary()?;
            let m1 = self.tape.scalar(-1.0);
            return Ok(self.tape.mul(a, m1));
        }
        let a = self.atom()?;
        self.power_of(a)
    }

    fn power_of(&mut self, a: NodeId) -> Result<NodeId, ExprError> {
        if self.eat("^") || self.eat("**") {
            match self.signed_number() {
                Some(p) => Ok(self.tape.pow(a, p)),
                None => self.err(format!("an exponent must be a number, found {}", self.describe())),
            }
        } else {
            Ok(a)
        }
    }

    fn atom(&mut self) -> Result<NodeId, ExprError> {
        match self.peek().clone() {
            Tok::Num(v) => {
                self.pos += 1;
                Ok(self.tape.scalar(v))
            }
            Tok::Sym("(") => {
                self.pos += 1;
                let a = self.expr()?;
                self.expect(")")?;
                Ok(a)
            }
            Tok::Name(name) if name == "clip" => {
                self.pos += 1;
                self.expect("(")?;
                let a = self.expr()?;
                self.expect(",")?;
                let Some(lo) = self.signed_number() else { return self.err("clip's lower bound must be a number") };
                self.expect(",")?;
                let Some(hi) = self.signed_number() else { return self.err("clip's upper bound must be a number") };
                if lo > hi {
                    return self.err(format!("clip's bounds are reversed: {lo} > {hi}"));
                }
                self.expect(")")?;
                Ok(self.tape.clip(a, lo, hi))
            }
            Tok::Name(name) if FUNCS.contains(&name.as_str()) => {
                self.pos += 1;
                self.expect("(")?;
                let a = self.expr()?;
                self.expect(")")?;
                Ok(match name.as_str() {
                    "relu" => self.tape.relu(a),
                    "tanh" => self.tape.tanh(a),
                    "sigmoid" => self.tape.sigmoid(a),
                    "exp" => self.tape.exp(a),
                    "log" => self.tape.log(a),
                    _ => self.tape.sqrt(a),
                })
            }
            Tok::Name(name) => match self.vars.get(&name) {
                Some(&id) => {
                    self.pos += 1;
                    Ok(id)
                }
                None if matches!(self.toks.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Sym("("))) => self.err(
                    format!("unknown function '{name}' (the functions are {}, clip(x, lo, hi))", FUNCS.join(", ")),
                ),
                None => self.err(format!("unknown name '{name}' (declare inputs first, e.g. {name} = 1.5)")),
            },
            _ => self.err(format!("expected a number, a name, a function or '(', found {}", self.describe())),
        }
    }
}

/// Parse `src`, record it on a tape and run the backward pass from its last statement.
pub fn parse(src: &str) -> Result<Program, ExprError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
        tape: Tape::new(),
        vars: HashMap::new(),
        assigned: HashMap::new(),
        inputs: Vec::new(),
        depth: 0,
    };
    let output = p.program()?;
    let mut tape = p.tape;
    tape.backward(output);
    Ok(Program { tape, inputs: p.inputs, output })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn errors_name_the_problem_and_place() {
        // A trailing minus is an error, not an out-of-bounds panic.
        for prog in ["-", "x = 1; y = -", "x = -"] {
            assert!(parse(prog).is_err(), "{prog}");
        }
        let e = parse("x = 1; y = foo(x)").unwrap_err();
        assert_eq!((e.line, e.column), (1, 12));
        assert!(e.message.contains("unknown function 'foo'") && e.message.contains("sigmoid"), "{e}");
        let e = parse("x = 1; y = x + z").unwrap_err();
        assert_eq!((e.line, e.column), (1, 16));
        assert!(e.message.contains("unknown name 'z'"), "{e}");
        let e = parse("x = 2\ny = x ^ x").unwrap_err();
        assert_eq!((e.line, e.column), (2, 9));
        assert!(e.message.contains("exponent must be a number"), "{e}");
        assert!(parse("x = 1; y = (x + 1").unwrap_err().message.contains("expected ')'"));
        assert!(parse("x = 1 $").unwrap_err().message.contains("unexpected character '$'"));
        assert!(parse("").unwrap_err().message.contains("empty"));
        assert!(parse("x = 1; x = 2").unwrap_err().message.contains("declared twice"));
        assert!(parse("x = 1; clip(x, 2, 1)").unwrap_err().message.contains("reversed"));
        let deep = format!("x = 1; {}x{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("nested more than 100 deep"));
        assert!(parse(&format!("x = 1; {}x", "-".repeat(10_000))).is_err());
        let ok = format!("x = 2; {}x{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(parse(&ok).unwrap().tape.grad_item(parse(&ok).unwrap().inputs[0].1), Some(1.0));
    }

    #[test]
    fn precedence_and_unary_minus() {
        // 2 + 3 * 4 ^ 2 = 50; -x ^ 2 = -(x^2) as in Python.
        let p = parse("x = 3; y = 2 + 3 * 4 ^ 2 + -x ^ 2").unwrap();
        assert_eq!(p.tape.item(p.output), Some(50.0 - 9.0));
        assert_eq!(p.tape.grad_item(p.inputs[0].1), Some(-6.0));
    }
}
