//! `geometric-engine`: small, exact geometry on points given as arrays.

use serde_json::{Value, json};

/// Most points one call accepts.
pub const MAX_POINTS: usize = 100_000;

fn point(v: &Value, what: &str) -> Result<Vec<f64>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{what} must be an array of numbers"))?;
    arr.iter()
        .map(|x| {
            x.as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{what} must hold finite numbers"))
        })
        .collect()
}

fn points(v: Option<&Value>, dims: Option<usize>) -> Result<Vec<Vec<f64>>, String> {
    let arr = v
        .and_then(Value::as_array)
        .ok_or_else(|| "`points` must be an array of points".to_string())?;
    if arr.is_empty() || arr.len() > MAX_POINTS {
        return Err(format!("`points` must hold 1 to {MAX_POINTS} points"));
    }
    let pts: Vec<Vec<f64>> = arr
        .iter()
        .enumerate()
        .map(|(i, p)| point(p, &format!("points[{i}]")))
        .collect::<Result<_, _>>()?;
    let d = dims.unwrap_or(pts[0].len());
    if d == 0 || pts.iter().any(|p| p.len() != d) {
        return Err(format!("every point must have {d} coordinate(s)"));
    }
    Ok(pts)
}

/// Runs one operation. Input `{"op": ..., ...}`:
/// - `distance` `{"a": [..], "b": [..]}` -> Euclidean distance (any dimension);
/// - `centroid` `{"points": [[..], ..]}` -> mean point;
/// - `polygon_area` `{"points": [[x, y], ..]}` -> area by the shoelace formula
///   (and the signed area: positive when counter-clockwise);
/// - `bounding_box` `{"points": [[..], ..]}` -> `min` and `max` corners.
pub fn run(input: &Value) -> Result<Value, String> {
    let op = input.get("op").and_then(Value::as_str).ok_or_else(|| {
        "`op` must be one of distance, centroid, polygon_area, bounding_box".to_string()
    })?;
    match op {
        "distance" => {
            let a = point(input.get("a").unwrap_or(&Value::Null), "`a`")?;
            let b = point(input.get("b").unwrap_or(&Value::Null), "`b`")?;
            if a.len() != b.len() || a.is_empty() {
                return Err("`a` and `b` must have the same, non-zero dimension".into());
            }
            let d = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt();
            Ok(json!({"op": op, "distance": d}))
        }
        "centroid" => {
            let pts = points(input.get("points"), None)?;
            let n = pts.len() as f64;
            let c: Vec<f64> = (0..pts[0].len())
                .map(|i| pts.iter().map(|p| p[i]).sum::<f64>() / n)
                .collect();
            Ok(json!({"op": op, "centroid": c}))
        }
        "polygon_area" => {
            let pts = points(input.get("points"), Some(2))?;
            if pts.len() < 3 {
                return Err("a polygon needs at least 3 points".into());
            }
            let twice: f64 = (0..pts.len())
                .map(|i| {
                    let (p, q) = (&pts[i], &pts[(i + 1) % pts.len()]);
                    p[0] * q[1] - q[0] * p[1]
                })
                .sum();
            Ok(json!({"op": op, "area": (twice / 2.0).abs(), "signed_area": twice / 2.0}))
        }
        "bounding_box" => {
            let pts = points(input.get("points"), None)?;
            let dims = pts[0].len();
            let min: Vec<f64> = (0..dims)
                .map(|i| pts.iter().map(|p| p[i]).fold(f64::INFINITY, f64::min))
                .collect();
            let max: Vec<f64> = (0..dims)
                .map(|i| pts.iter().map(|p| p[i]).fold(f64::NEG_INFINITY, f64::max))
                .collect();
            Ok(json!({"op": op, "min": min, "max": max}))
        }
        other => Err(format!(
            "unknown op `{other}`; known: distance, centroid, polygon_area, bounding_box"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        let d = run(&json!({"op":"distance","a":[0,0],"b":[3,4]})).unwrap();
        assert_eq!(d["distance"], 5.0);
        let a = run(&json!({"op":"polygon_area","points":[[0,0],[4,0],[4,3],[0,3]]})).unwrap();
        assert_eq!(a["area"], 12.0);
        let c = run(&json!({"op":"centroid","points":[[0,0,0],[2,4,6]]})).unwrap();
        assert_eq!(c["centroid"], json!([1.0, 2.0, 3.0]));
        assert!(run(&json!({"op":"polygon_area","points":[[0,0],[1,1]]})).is_err());
        assert!(run(&json!({"op":"distance","a":[0],"b":[1,2]})).is_err());
        assert!(run(&json!({"op":"nope"})).is_err());
    }
}
